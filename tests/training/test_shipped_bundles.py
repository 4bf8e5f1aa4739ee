"""Every detector bundle shipped under ``models/`` loads and finds the defect on real NEU-DET images at its
own operating point: a manifest edited by hand (a fusion setting, a recalibration) cannot ship broken."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasets.model import NEU_DET_CLASSES, ImageRecord
from datasets.readers import read_dataset
from datasets.split import apply_split, read_split
from training.bundle import load_bundle
from training.eval_inputs import box_iou
from training.inference import Predictor, read_image

REPO = Path(__file__).resolve().parents[2]
DETECTOR_BUNDLES = sorted(
    path.parent.name
    for path in (REPO / "models").glob("*/manifest.json")
    if json.loads(path.read_text())["format"] == "steel-model-bundle/1"
)


@pytest.fixture(scope="module")
def one_val_image_per_class(neu_root: Path) -> list[ImageRecord]:
    """The first validation image of each class (none of these bundles was trained on it)."""
    aset = read_dataset(neu_root / "annotations", images_dir=neu_root / "images")
    _, val = apply_split(aset, read_split(REPO / "configs" / "splits" / "neu-det-dev.json"))
    firsts: dict[str, ImageRecord] = {}
    for record in val.images:
        firsts.setdefault(record.boxes[0].label, record)
    return [firsts[name] for name in NEU_DET_CLASSES]


def test_the_accuracy_and_fast_configurations_are_among_the_shipped_bundles():
    assert {"neu-yolo-n", "neu-yolo-ns-ens4"} <= set(DETECTOR_BUNDLES)


@pytest.mark.parametrize("name", DETECTOR_BUNDLES)
def test_a_shipped_bundle_loads_and_finds_most_defects_on_new_images(
    name: str, one_val_image_per_class: list[ImageRecord]
):
    bundle = load_bundle(REPO / "models" / name, device="cpu")
    assert bundle.class_names == list(NEU_DET_CLASSES)
    predictor = Predictor(bundle, device="cpu", backend="torch")
    found = predictor([read_image(str(r.found_path())) for r in one_val_image_per_class])
    hits = 0
    for record, det in zip(one_val_image_per_class, found, strict=True):
        truth = [b.xyxy for b in record.boxes]
        labels = [NEU_DET_CLASSES.index(b.label) for b in record.boxes]
        if len(det):
            iou = box_iou(det.xyxy, np.array(truth))
            hits += any(det.class_ids[i] == labels[j] for i, j in np.argwhere(iou >= 0.3))
    assert hits >= 4, f"{name}: found the annotated defect on {hits} of 6 validation images"
