"""The ``line`` operating point on real NEU-DET boxes: scores set by hand so each step of the search can be
followed on paper, then the shipped model's own detections on validation images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasets.background import BackgroundRule, read_background, select_clean_tiles, write_tiles
from datasets.model import NEU_DET_CLASSES
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT
from datasets.split import read_split
from training.calibrate_cli import with_clean_tiles
from training.evaluate_cli import Scored, score_dataset
from training.evaluation import GroundTruth, Prediction
from training.line_figures import LineFigures, class_thresholds, line_figures, strays
from training.operating_point import CalibrationConfig, calibrate

from .test_line_figures import voc_truth

CRAZING, INCLUSION = NEU_DET_CLASSES.index("crazing"), NEU_DET_CLASSES.index("inclusion")
SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
SPLIT = REPO_ROOT / "configs" / "splits" / "neu-det-dev.json"
CORNER = [188.0, 188.0, 199.0, 199.0]  # touches no box of the images below (checked in the fixture)


def line(target_reject: float, target_class: float, floor: float = 0.05) -> CalibrationConfig:
    return CalibrationConfig(
        method="line",
        floor=floor,
        target_reject_recall=target_reject,
        target_class_reject_recall=target_class,
    )


@pytest.fixture
def scene(neu_root: Path) -> tuple[list[GroundTruth], list[Prediction]]:
    """Two crazing images and one inclusion image, each with its defect found and a stray beside it:

    * crazing A: crazing on the defect at 0.6, a crazing stray at 0.3;
    * crazing B: crazing on the defect at only 0.2, a crazing stray at 0.4 (the stray is what rejects it
      once the crazing threshold passes 0.2);
    * inclusion: inclusion on the defect at 0.8, an inclusion stray at 0.5 and a crazing stray at 0.1.
    """
    a, b, inc = (
        voc_truth(neu_root, "crazing_1"),
        voc_truth(neu_root, "crazing_2"),
        voc_truth(neu_root, "inclusion_2"),
    )

    def pred(gt: GroundTruth, found: tuple[float, int], *stray: tuple[float, int]) -> Prediction:
        boxes = np.array([gt.boxes[0], *[CORNER] * len(stray)])
        return Prediction(boxes, [found[0], *(s for s, _ in stray)], [found[1], *(k for _, k in stray)])

    preds = [
        pred(a, (0.6, CRAZING), (0.3, CRAZING)),
        pred(b, (0.2, CRAZING), (0.4, CRAZING)),
        pred(inc, (0.8, INCLUSION), (0.5, INCLUSION), (0.1, CRAZING)),
    ]
    gts = [a, b, inc]
    assert [strays(g, p).tolist() for g, p in zip(gts, preds, strict=True)] == [
        [False, True], [False, True], [False, True, True]
    ]  # fmt: skip
    return gts, preds


def test_free_strays_go_and_a_stray_that_rejects_a_defective_image_stays(scene):
    gts, preds = scene
    point = calibrate(gts, preds, NEU_DET_CLASSES, line(1.0, 1.0))
    # crazing passes its strays at 0.1 and 0.3 (crazing B stays rejected by its 0.4 stray), inclusion its
    # 0.5 stray; passing the 0.4 stray would let crazing B escape
    assert point.per_class["crazing"] == pytest.approx(0.3001)
    assert point.per_class["inclusion"] == pytest.approx(0.5001)
    figures = line_figures(gts, preds, NEU_DET_CLASSES, class_thresholds(NEU_DET_CLASSES, point.per_class, 0))
    assert figures.reject_recall == 1.0 and figures.stray_detections == 1
    assert point.achieved["crazing"] == point.achieved["inclusion"] == 1.0


def test_a_lower_recall_target_trades_an_escaped_image_for_the_last_stray(scene):
    gts, preds = scene
    point = calibrate(gts, preds, NEU_DET_CLASSES, line(0.6, 0.5))
    assert point.per_class["crazing"] == pytest.approx(0.4001)
    assert point.achieved["crazing"] == 0.5
    figures = line_figures(gts, preds, NEU_DET_CLASSES, class_thresholds(NEU_DET_CLASSES, point.per_class, 0))
    assert figures.reject_recall == pytest.approx(2 / 3) and figures.stray_detections == 0


def test_a_target_out_of_reach_still_removes_every_stray_that_costs_nothing(scene, neu_root: Path):
    gts, preds = scene
    pitted = voc_truth(neu_root, "pitted_surface_1")  # the model found nothing on it
    nothing = Prediction(np.zeros((0, 4)), [], [])
    point = calibrate([*gts, pitted], [*preds, nothing], NEU_DET_CLASSES, line(1.0, 1.0))
    assert point.achieved["pitted_surface"] == 0.0  # even at the floor: the target is lowered to that
    assert point.per_class["crazing"] == pytest.approx(0.3001)
    assert point.per_class["inclusion"] == pytest.approx(0.5001)


def test_a_stray_scored_one_stays_and_no_threshold_passes_one(scene):
    gts, preds = scene
    sure = Prediction(np.array([gts[0].boxes[0], CORNER]), [0.6, 1.0], [CRAZING, INCLUSION])
    point = calibrate(gts, [sure, *preds[1:]], NEU_DET_CLASSES, line(1.0, 1.0))
    assert max(point.per_class.values()) <= 1.0
    assert point.per_class["inclusion"] == pytest.approx(0.5001)  # its 0.5 stray passed, the 1.0 one kept


def test_classes_without_images_are_held_at_the_highest_seen_threshold(scene):
    gts, preds = scene
    point = calibrate(gts, preds, NEU_DET_CLASSES, line(1.0, 1.0))
    assert point.achieved["patches"] is None
    assert point.per_class["patches"] == point.per_class["scratches"] == pytest.approx(0.5001)


@pytest.fixture(scope="module")
def shipped_on_val(neu_root: Path) -> Scored:
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("shipped bundle models/neu-yolo-n not present")
    return score_dataset(model=SHIPPED, data=neu_root / "annotations", split=SPLIT, show_progress=False)


def figures_at(scored: Scored, cfg: CalibrationConfig, on: Scored | None = None) -> LineFigures:
    names = scored.predictor.class_names
    point = calibrate(scored.gts, scored.preds, names, cfg)
    on = on or scored
    return line_figures(on.gts, on.preds, names, class_thresholds(names, point.per_class, 0))


def test_on_the_shipped_model_it_keeps_the_targets_with_fewer_strays_than_best_f1(shipped_on_val: Scored):
    assert len(shipped_on_val.gts) == len(json.loads(SPLIT.read_text())["val"]) == 288
    got, f1 = figures_at(shipped_on_val, line(0.99, 0.97)), figures_at(shipped_on_val, CalibrationConfig())
    assert got.reject_recall >= 0.99
    assert all(r is not None and r >= 0.97 for r in got.reject_recall_per_class.values())
    assert got.stray_per_100_images < f1.stray_per_100_images


def test_clean_tiles_of_the_val_images_make_it_weigh_clean_steel(shipped_on_val: Scored, neu_root, tmp_path):
    aset = read_dataset(neu_root / "annotations")
    subset = aset.subset([im.name for im in aset.images if im.name.startswith(("inclusion", "patches"))][::3])
    write_tiles(select_clean_tiles(subset, BackgroundRule()), subset, tmp_path)
    val = set(read_split(SPLIT).val)
    of_val = [t for t in read_background(tmp_path)[1] if t.source in val]
    assert 0 < len(of_val) < len(read_background(tmp_path)[1])  # tiles of training images stay out
    both = with_clean_tiles(shipped_on_val, tmp_path, SPLIT)
    assert len(both.gts) == 288 + len(of_val) and f"{len(of_val)} clean tiles" in both.data
    assert all(len(g.labels) == 0 for g in both.gts[288:])
    clean_only = Scored(shipped_on_val.predictor, both.gts[288:], both.preds[288:], "clean")
    images_only = figures_at(shipped_on_val, line(0.99, 0.97), on=clean_only)
    weighed = figures_at(both, line(0.99, 0.97), on=clean_only)
    assert weighed.stray_detections < images_only.stray_detections
    kept = figures_at(both, line(0.99, 0.97), on=shipped_on_val)
    assert kept.reject_recall >= 0.99


def test_clean_tiles_of_training_images_only_are_a_clear_error(shipped_on_val: Scored, neu_root, tmp_path):
    aset = read_dataset(neu_root / "annotations")
    train = set(read_split(SPLIT).train)
    subset = aset.subset(
        [im.name for im in aset.images if im.name in train and im.name.startswith("patches")][:3]
    )
    write_tiles(select_clean_tiles(subset, BackgroundRule()), subset, tmp_path)
    with pytest.raises(ValueError, match=f"{tmp_path}: no clean tiles cut from the split's val images"):
        with_clean_tiles(shipped_on_val, tmp_path, SPLIT)
