"""Line-level figures on real NEU-DET boxes, each case small enough to check by hand: which defective
images the reject rule catches (overall and per class of the annotated defect), and which detections are
strays (IoU below 0.05 with every annotated box), per 100 images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from defusedxml import ElementTree

from datasets.model import NEU_DET_CLASSES
from training.evaluation import GroundTruth, Prediction, box_iou, evaluate
from training.line_figures import STRAY_IOU, class_thresholds, line_figures, strays

CRAZING, INCLUSION, SCRATCHES = (NEU_DET_CLASSES.index(n) for n in ("crazing", "inclusion", "scratches"))


def voc_truth(neu_root: Path, name: str) -> GroundTruth:
    """The image's boxes straight from its VOC XML (1-based inclusive corners -> 0-based, x2 exclusive)."""
    boxes, labels = [], []
    for obj in ElementTree.parse(neu_root / "annotations" / f"{name}.xml").getroot().iter("object"):
        bb = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(NEU_DET_CLASSES.index(obj.find("name").text.strip()))
    return GroundTruth(np.array(boxes), np.array(labels))


def one_box(box: np.ndarray, score: float, label: int) -> Prediction:
    return Prediction(np.asarray(box, dtype=np.float64)[None], [score], [label])


@pytest.fixture
def three_images(neu_root: Path) -> list[GroundTruth]:
    return [voc_truth(neu_root, n) for n in ("crazing_1", "inclusion_2", "scratches_10")]


def test_reject_recall_counts_images_where_any_kept_detection_fires(three_images):
    crazing, inclusion, scratches = three_images
    preds = [
        one_box(crazing.boxes[0], 0.30, CRAZING),  # caught at 0.25
        Prediction.empty(),  # the inclusion image escapes
        one_box(scratches.boxes[0], 0.90, INCLUSION),  # wrong class still rejects the sheet
    ]
    figures = line_figures(
        three_images, preds, NEU_DET_CLASSES, class_thresholds(NEU_DET_CLASSES, None, 0.25)
    )
    assert figures.defective_images == 3 and figures.rejected_defective_images == 2
    assert figures.reject_recall == pytest.approx(2 / 3)
    per_class = figures.reject_recall_per_class
    assert per_class["crazing"] == 1.0 and per_class["inclusion"] == 0.0 and per_class["scratches"] == 1.0
    assert per_class["patches"] is None and figures.defective_images_per_class["patches"] == 0
    assert figures.stray_detections == 0 and figures.stray_per_100_images == 0.0


def test_a_per_class_threshold_above_the_score_lets_that_image_escape(three_images):
    crazing, _, scratches = three_images
    preds = [
        one_box(crazing.boxes[0], 0.30, CRAZING),
        Prediction.empty(),
        one_box(scratches.boxes[0], 0.9, 5),
    ]
    thresholds = class_thresholds(NEU_DET_CLASSES, {"crazing": 0.4}, 0.25)
    figures = line_figures(three_images, preds, NEU_DET_CLASSES, thresholds)
    assert figures.reject_recall_per_class["crazing"] == 0.0
    assert figures.reject_recall == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("iou", "is_stray"),
    [(0.0, True), (0.03, True), (0.049, True), (0.051, False), (0.2, False), (1.0, False)],
)
def test_a_detection_is_stray_below_iou_point_05_with_every_annotated_box(neu_root: Path, iou, is_stray):
    truth = voc_truth(neu_root, "scratches_10")
    x1, y1, x2, y2 = truth.boxes[0]
    width = x2 - x1
    # Same height, slid right by s: IoU = (w - s) / (w + s), so s = w (1 - IoU) / (1 + IoU).
    shift = width * (1 - iou) / (1 + iou)
    pred = one_box([x1 + shift, y1, x2 + shift, y2], 0.9, SCRATCHES)
    only_first = GroundTruth(truth.boxes[:1], truth.labels[:1])  # the other boxes would blur the table
    assert bool(strays(only_first, pred)[0]) is is_stray
    assert STRAY_IOU == 0.05


def test_strays_are_counted_per_100_images_and_defect_free_images_count_only_for_strays(three_images):
    crazing, inclusion, _ = three_images
    defect_free = GroundTruth.empty()
    corner = [0.0, 0.0, 4.0, 4.0]  # 16 px²: touches crazing_1's image-wide box, far below IoU 0.05
    assert all(box_iou(np.array([corner]), g.boxes).max() < 0.001 for g in (crazing, inclusion))
    gts = [crazing, inclusion, defect_free, defect_free]
    preds = [
        Prediction(np.array([crazing.boxes[0], corner]), [0.8, 0.6], [CRAZING, CRAZING]),  # 1 stray
        one_box(corner, 0.2, INCLUSION),  # below 0.25: not kept, neither stray nor a reject
        one_box([50, 50, 90, 90], 0.5, SCRATCHES),  # 1 stray on defect-free steel
        Prediction(np.array([[10, 10, 30, 30], [100, 100, 150, 150]]), [0.3, 0.26], [0, 1]),  # 2 strays
    ]
    figures = line_figures(gts, preds, NEU_DET_CLASSES, class_thresholds(NEU_DET_CLASSES, None, 0.25))
    assert figures.stray_detections == 4
    assert figures.stray_per_100_images == pytest.approx(100.0)  # 4 strays on 4 images
    assert figures.defective_images == 2 and figures.reject_recall == pytest.approx(0.5)


def test_evaluate_reports_line_figures_at_the_operating_point_in_json(three_images):
    crazing, inclusion, scratches = three_images
    preds = [
        one_box(crazing.boxes[0], 0.30, CRAZING),
        one_box(inclusion.boxes[0], 0.20, INCLUSION),
        one_box(scratches.boxes[0], 0.90, SCRATCHES),
    ]
    default = evaluate(three_images, preds, NEU_DET_CLASSES, conf_threshold=0.25)
    assert default.line.reject_recall == pytest.approx(2 / 3)
    calibrated = evaluate(
        three_images, preds, NEU_DET_CLASSES, conf_threshold=0.25, per_class_thresholds={"inclusion": 0.1}
    )
    payload = json.loads(json.dumps(calibrated.to_dict(), allow_nan=False))
    assert payload["reject_recall"] == 1.0
    assert payload["reject_recall_per_class"]["inclusion"] == 1.0
    assert payload["reject_recall_per_class"]["patches"] is None
    assert payload["stray_per_100_images"] == 0.0
    assert payload["operating_point"]["inclusion"] == 0.1 and payload["operating_point"]["crazing"] == 0.25
    assert calibrated.recall > default.recall  # the inclusion box is now a true positive
