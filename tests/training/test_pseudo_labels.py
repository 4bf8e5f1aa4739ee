"""``steel pseudo-label``: a teacher's confident boxes join the training side where no annotated box is,
validation stays exactly as annotated, and the written set trains under the same split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets.detections import Detections
from datasets.model import NEU_DET_CLASSES
from datasets.readers import read_dataset
from datasets.split import apply_split, make_split, read_split, write_split
from inspection.cli import app
from training.eval_inputs import box_iou
from training.pseudo_labels import PseudoLabelRule, teacher_boxes, with_pseudo_labels

runner = CliRunner()
SHIPPED = Path(__file__).resolve().parents[2] / "models" / "neu-yolo-n"


@pytest.fixture
def voc(neu_root: Path, tmp_path: Path) -> Path:
    """Thirty real VOC files, five per class."""
    folder = tmp_path / "annotations"
    folder.mkdir()
    for cls in NEU_DET_CLASSES:
        for xml in sorted((neu_root / "annotations").glob(f"{cls}_*.xml"))[:5]:
            shutil.copy(xml, folder / xml.name)
    return folder


@pytest.fixture
def split_file(voc: Path, neu_root: Path, tmp_path: Path) -> Path:
    aset = read_dataset(voc, images_dir=neu_root / "images")
    return write_split(make_split(aset, val_fraction=0.3, seed=0), tmp_path / "split.json")


def _record(neu_root: Path, cls: str):
    """The first annotated image of a class in the development split."""
    xml = sorted((neu_root / "annotations").glob(f"{cls}_*.xml"))[0]
    return read_dataset(xml, images_dir=neu_root / "images").images[0]


def test_a_teacher_box_on_an_annotated_defect_is_not_added_twice(neu_root: Path):
    record = _record(neu_root, "inclusion")
    annotated = np.array([b.xyxy for b in record.boxes], np.float32)
    elsewhere = np.array([[0, 0, 20, 20]], np.float32)  # a corner this image's boxes do not reach
    assert box_iou(elsewhere, annotated).max() < 0.3
    det = Detections(
        np.concatenate([annotated + 2, elsewhere]),
        np.full(len(annotated) + 1, 0.9, np.float32),
        np.full(len(annotated) + 1, 1, np.int64),
    )
    added = teacher_boxes(record, det, NEU_DET_CLASSES, PseudoLabelRule())
    assert [b.xyxy for b in added] == [(0.0, 0.0, 20.0, 20.0)] and added[0].label == "inclusion"


def test_low_scores_slivers_and_boxes_past_the_edge_follow_the_rule(neu_root: Path):
    record = _record(neu_root, "crazing")
    det = Detections(
        np.array([[-10, 150, 3, 199], [180, 180, 230, 240], [0, 0, 30, 30]], np.float32),
        np.array([0.95, 0.8, 0.49], np.float32),
        np.array([0, 0, 0], np.int64),
    )
    added = teacher_boxes(record, det, NEU_DET_CLASSES, PseudoLabelRule(max_iou=1.0))
    # the first is a 3 px sliver once clipped, the last is below 0.5; the second is clipped to the image
    assert [b.xyxy for b in added] == [(180.0, 180.0, float(record.width), float(record.height))]


def test_validation_images_keep_their_annotations_exactly(voc: Path, split_file: Path, neu_root: Path):
    aset = read_dataset(voc, images_dir=neu_root / "images")
    train, val = apply_split(aset, read_split(split_file))
    everywhere = Detections(
        np.array([[0, 0, 40, 40]], np.float32), np.array([0.99], np.float32), np.array([3], np.int64)
    )
    detections = {r.name: everywhere for r in aset.images}
    out, report = with_pseudo_labels(
        aset, {r.name for r in train.images}, detections, PseudoLabelRule(max_iou=1.0), teacher="t"
    )
    by_name = out.by_name()
    assert all(by_name[r.name] == r for r in val.images)
    assert all(len(by_name[r.name].boxes) == len(r.boxes) + 1 for r in train.images)
    assert report.added["pitted_surface"] == len(train.images) == report.images_changed


def test_training_images_without_teacher_detections_are_refused_by_name(voc: Path, neu_root: Path):
    aset = read_dataset(voc, images_dir=neu_root / "images")
    with pytest.raises(ValueError, match="crazing_1.jpg"):
        with_pseudo_labels(aset, {"crazing_1.jpg"}, {}, PseudoLabelRule(), teacher="t")


def test_the_command_writes_a_coco_set_that_trains_under_the_same_split(
    voc: Path, split_file: Path, neu_root: Path, tmp_path: Path
):
    out = tmp_path / "pseudo" / "neu-pseudo.json"
    result = runner.invoke(
        app,
        ["pseudo-label", "--teacher", str(SHIPPED), "--data", str(voc), "--images", str(neu_root / "images"),
         "--split", str(split_file), "--out", str(out), "--min-score", "0.3", "--device", "cpu"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "pseudo" / "neu-pseudo.report.json").read_text())
    assert f"{sum(report['added'].values())} boxes added" in result.stdout
    original = read_dataset(voc, images_dir=neu_root / "images")
    written = read_dataset(out, images_dir=neu_root / "images")
    assert not [p for p in written.problems if p.severity == "error"]
    train, val = apply_split(written, read_split(split_file))  # same names, same content hashes
    _, original_val = apply_split(original, read_split(split_file))
    assert [r.boxes for r in val.images] == [r.boxes for r in original_val.images]
    extra = 0
    for record in train.images:
        before = original.by_name()[record.name].boxes
        assert record.boxes[: len(before)] == before
        new = record.boxes[len(before) :]
        extra += len(new)
        if new and before:
            iou = box_iou(np.array([b.xyxy for b in new]), np.array([b.xyxy for b in before]))
            assert iou.max() < 0.3
    assert extra == sum(report["added"].values()) and report["train_images"] == len(train.images)


def test_a_rule_out_of_range_is_refused_naming_the_option(voc: Path, split_file: Path, tmp_path: Path):
    result = runner.invoke(
        app,
        ["pseudo-label", "--teacher", str(SHIPPED), "--data", str(voc), "--split", str(split_file),
         "--out", str(tmp_path / "x.json"), "--min-score", "1.5"],
    )  # fmt: skip
    assert result.exit_code == 2 and "--min-score" in result.output
    assert not (tmp_path / "x.json").exists()
