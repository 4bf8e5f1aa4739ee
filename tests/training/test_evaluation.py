"""Known-answer tests of the detection evaluator (pycocotools underneath) and its plots."""

from __future__ import annotations

import json
from pathlib import Path

import defusedxml.ElementTree as ET
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from datasets.model import NEU_DET_CLASSES, Box, ImageRecord
from datasets.settings import data_root
from training.evaluation import (
    GroundTruth,
    Prediction,
    box_iou,
    evaluate,
    ground_truth_from_records,
    predictions_from_outputs,
)
from training.plots import plot_confusion_matrix, plot_pr_curves, plot_training_curves

NAMES = ["a", "b", "c", "d"]
BG = len(NAMES)  # index of the background row/column


def _voc_boxes(xml_path: Path) -> list[Box]:
    """Pascal VOC (1-based inclusive ints) to our 0-based, x2-exclusive boxes: x1 = xmin - 1, x2 = xmax."""
    root = ET.parse(xml_path).getroot()
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append(Box(xmin - 1, ymin - 1, xmax, ymax, obj.find("name").text.strip()))
    return boxes


@pytest.fixture(scope="module")
def neu_records() -> list[ImageRecord]:
    """Two annotations per class, plus files with a repeated box and with mixed-class boxes."""
    ann_dir = data_root() / "annotations"
    if not ann_dir.is_dir():
        pytest.skip(f"NEU-DET annotations not found at {ann_dir} (set STEEL_DATA)")
    files = []
    for cls in NEU_DET_CLASSES:
        files += sorted(ann_dir.glob(f"{cls}_*.xml"))[:2]
    files += [p for p in (ann_dir / "crazing_120.xml", ann_dir / "scratches_108.xml") if p.exists()]
    return [
        ImageRecord(name=f"{p.stem}.jpg", width=200, height=200, boxes=tuple(_voc_boxes(p))) for p in files
    ]


def _perfect(gts: list[GroundTruth]) -> list[Prediction]:
    return [Prediction(g.boxes.copy(), np.linspace(0.9, 0.5, len(g.labels)), g.labels.copy()) for g in gts]


# --- inputs -------------------------------------------------------------------------------------------


def test_ground_truth_from_records_maps_labels_and_keeps_empty_images(neu_records):
    records = [*neu_records, ImageRecord(name="clean.jpg", width=200, height=200)]
    gts = ground_truth_from_records(records, NEU_DET_CLASSES)
    assert len(gts) == len(records)
    for rec, gt in zip(records, gts, strict=True):
        assert gt.boxes.shape == (len(rec.boxes), 4)
        np.testing.assert_array_equal(gt.boxes, [b.xyxy for b in rec.boxes] or np.zeros((0, 4)))
        assert [NEU_DET_CLASSES[i] for i in gt.labels] == [b.label for b in rec.boxes]
    assert gts[-1].boxes.shape == (0, 4) and gts[-1].labels.shape == (0,)


def test_ground_truth_from_records_rejects_unknown_label():
    rec = ImageRecord(name="x.jpg", width=10, height=10, boxes=(Box(0, 0, 5, 5, "rust"),))
    with pytest.raises(ValueError, match="rust"):
        ground_truth_from_records([rec], NEU_DET_CLASSES)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GroundTruth(np.zeros((2, 3)), [0, 1]),
        lambda: GroundTruth(np.zeros((2, 4)), [0]),
        lambda: Prediction(np.zeros((1, 4)), [0.5, 0.6], [0]),
        lambda: Prediction(np.zeros((1, 4)), [np.nan], [0]),
    ],
)
def test_malformed_inputs_raise(make):
    with pytest.raises(ValueError):
        make()


def test_evaluate_rejects_mismatched_lengths_and_unknown_class_index():
    gt = GroundTruth([[0, 0, 10, 10]], [0])
    with pytest.raises(ValueError, match="2 prediction images"):
        evaluate([gt], [Prediction.empty(), Prediction.empty()], NAMES)
    with pytest.raises(ValueError, match="outside"):
        evaluate([gt], [Prediction([[0, 0, 10, 10]], [0.9], [len(NAMES)])], NAMES)


def test_predictions_from_model_outputs_accepts_tensors_and_arrays():
    import torch  # seconds to import: the only test here that feeds tensors

    outputs = [
        {
            "boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]),
            "scores": torch.tensor([0.7]),
            "labels": torch.tensor([2]),
        },
        {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, dtype=int)},
    ]
    preds = predictions_from_outputs(outputs)
    np.testing.assert_allclose(preds[0].boxes, [[1, 2, 30, 40]])
    assert preds[0].labels.tolist() == [2] and preds[0].scores == pytest.approx([0.7])
    assert preds[1].boxes.shape == (0, 4)


# --- IoU convention ------------------------------------------------------------------------------------


def test_box_iou_agrees_with_pycocotools_on_x2_exclusive_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 150, size=(12, 2))
    a = np.hstack([xy[:6], xy[:6] + rng.uniform(5, 60, size=(6, 2))])
    b = np.hstack([xy[6:], xy[6:] + rng.uniform(5, 60, size=(6, 2))])
    to_xywh = lambda x: np.hstack([x[:, :2], x[:, 2:] - x[:, :2]])  # noqa: E731
    expected = mask_utils.iou(to_xywh(a), to_xywh(b), [0] * len(b))
    np.testing.assert_allclose(box_iou(a, b), expected, rtol=1e-12)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 6)


# --- mAP known answers ---------------------------------------------------------------------------------


def test_perfect_predictions_on_real_neu_det_boxes(neu_records):
    gts = ground_truth_from_records(neu_records, NEU_DET_CLASSES)
    result = evaluate(gts, _perfect(gts), NEU_DET_CLASSES)
    assert result.images == len(neu_records)
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)
    counts = np.bincount(np.concatenate([g.labels for g in gts]), minlength=len(NEU_DET_CLASSES))
    for k, name in enumerate(NEU_DET_CLASSES):
        assert result.per_class[name]["gt"] == counts[k] > 0
        assert result.per_class[name]["ap50"] == pytest.approx(1.0)
        assert result.per_class[name]["ap"] == pytest.approx(1.0)
    assert (result.precision, result.recall, result.f1) == (1.0, 1.0, 1.0)
    cm = result.confusion_matrix
    np.testing.assert_array_equal(np.diag(cm)[:-1], counts)
    assert cm.sum() == counts.sum()  # nothing off the diagonal, nothing in background


@pytest.mark.parametrize(
    ("width_px", "shift_px", "ap50", "ap50_95"),
    [
        (100, 0, 1.0, 1.0),
        (100, 10, 1.0, 0.7),  # IoU 90/110 = 0.818 passes thresholds 0.50..0.80: 7 of 10
        (100, 33, 1.0, 0.1),  # IoU 67/133 = 0.5038: just above 0.5, only the first threshold
        (100, 34, 0.0, 0.0),  # IoU 66/134 = 0.4925: just below 0.5
        (10, 3.2, 1.0, 0.1),  # IoU 6.8/13.2 = 0.515
        (10, 3.5, 0.0, 0.0),  # IoU 6.5/13.5 = 0.481 (0.517 if x2 were inclusive: pins the convention)
    ],
)
def test_shifted_box_crosses_iou_thresholds(width_px, shift_px, ap50, ap50_95):
    # A w x 50 box shifted right by d keeps (w - d) x 50 of overlap over a (w + d) x 50 union.
    gt_box = np.array([[20.0, 30.0, 20.0 + width_px, 80.0]])
    pred_box = gt_box + [shift_px, 0, shift_px, 0]
    expected_iou = (width_px - shift_px) / (width_px + shift_px)
    assert box_iou(gt_box, pred_box)[0, 0] == pytest.approx(expected_iou)
    result = evaluate([GroundTruth(gt_box, [1])], [Prediction(pred_box, [0.8], [1])], NAMES)
    assert result.per_class["b"]["ap50"] == pytest.approx(ap50)
    assert result.per_class["b"]["ap"] == pytest.approx(ap50_95)
    assert result.map50 == pytest.approx(ap50) and result.map50_95 == pytest.approx(ap50_95)
    assert result.recall == ap50  # the operating-point matcher uses the same IoU rule as COCO


def test_ap_uses_coco_101_point_interpolation():
    # Ranked TP, FP, TP over 2 GT: precision 1 up to recall 0.5 (51 grid points), then 2/3 (50 points).
    gts = [GroundTruth([[0, 0, 20, 20], [100, 100, 130, 130]], [0, 0])]
    preds = [Prediction([[0, 0, 20, 20], [50, 50, 70, 70], [100, 100, 130, 130]], [0.9, 0.8, 0.7], [0, 0, 0])]
    result = evaluate(gts, preds, NAMES)
    assert result.per_class["a"]["ap50"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
    curve = result.pr_curves["a"]
    assert curve.shape == result.recall_grid.shape == (101,)
    assert curve[:51] == pytest.approx(np.ones(51)) and curve[51:] == pytest.approx(np.full(50, 2 / 3))


def test_missed_class_scores_zero_and_class_without_gt_is_excluded():
    boxes = [[10, 10, 60, 40], [5, 50, 90, 120], [100, 20, 180, 70]]
    gts = [GroundTruth([box], [k]) for k, box in enumerate(boxes)]  # one box each of a, b, c; none of d
    preds = [Prediction([boxes[0]], [0.9], [0]), Prediction([boxes[1]], [0.8], [1]), Prediction.empty()]
    result = evaluate(gts, preds, NAMES)
    assert result.per_class["c"] == {"ap50": 0.0, "ap": 0.0, "gt": 1}
    assert result.per_class["d"] == {"ap50": None, "ap": None, "gt": 0}
    assert result.map50 == pytest.approx(2 / 3) and result.map50_95 == pytest.approx(2 / 3)
    assert np.isnan(result.pr_curves["d"]).all() and (result.pr_curves["c"] == 0).all()
    assert result.confusion_matrix[2, BG] == 1
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["per_class"]["d"] == {"ap50": None, "ap": None, "gt": 0}
    assert payload["map50"] == pytest.approx(2 / 3)


def test_map_is_the_mean_of_per_class_ap_on_jittered_real_boxes(neu_records):
    gts = ground_truth_from_records(neu_records, NEU_DET_CLASSES)
    rng = np.random.default_rng(7)
    preds = []
    for g in gts:
        jitter = rng.normal(0, 6, size=g.boxes.shape)
        decoy = np.array([[150.0, 150.0, 190.0, 190.0]])  # a low-score false positive per image
        preds.append(
            Prediction(
                np.vstack([g.boxes + jitter, decoy]),
                np.r_[rng.uniform(0.3, 1.0, len(g.labels)), 0.05],
                np.r_[g.labels, rng.integers(0, len(NEU_DET_CLASSES))],
            )
        )
    result = evaluate(gts, preds, NEU_DET_CLASSES)
    ap50 = [v["ap50"] for v in result.per_class.values()]
    ap = [v["ap"] for v in result.per_class.values()]
    assert result.map50 == pytest.approx(np.mean(ap50)) and result.map50_95 == pytest.approx(np.mean(ap))
    assert 0 < result.map50_95 < result.map50 <= 1
    for name in NEU_DET_CLASSES:  # AP50 is the mean of the class's PR curve on the recall grid
        assert result.pr_curves[name].mean() == pytest.approx(result.per_class[name]["ap50"])


# --- operating point: precision / recall / F1 ----------------------------------------------------------


def _f1_case() -> tuple[list[GroundTruth], list[Prediction]]:
    a0, b0, a1, a2 = [10, 10, 50, 50], [100, 100, 150, 140], [0, 0, 30, 30], [60, 60, 110, 120]
    far1, far2 = [160, 10, 195, 40], [150, 150, 190, 190]
    gts = [GroundTruth([a0, b0], [0, 1]), GroundTruth([a1, a2], [0, 0])]
    preds = [
        Prediction([a0, b0, far1], [0.9, 0.6, 0.7], [0, 1, 1]),  # TP, TP, FP
        Prediction([a1, a2, far2], [0.8, 0.2, 0.1], [0, 0, 0]),  # TP, TP (low score), FP (lower score)
    ]
    return gts, preds


def test_precision_recall_f1_at_conf_threshold_by_hand():
    # score >= 0.25 keeps 0.9, 0.8, 0.7, 0.6: TP 3, FP 1 over 4 GT -> P = R = F1 = 3/4.
    result = evaluate(*_f1_case(), NAMES, conf_threshold=0.25)
    assert (result.precision, result.recall, result.f1) == pytest.approx((0.75, 0.75, 0.75))
    # score >= 0.65 keeps 0.9, 0.8, 0.7: TP 2, FP 1 -> P 2/3, R 1/2, F1 4/7.
    result = evaluate(*_f1_case(), NAMES, conf_threshold=0.65)
    assert (result.precision, result.recall, result.f1) == pytest.approx((2 / 3, 0.5, 4 / 7))


def test_best_conf_excludes_the_low_score_false_positive():
    # At 0.2: TP 4, FP 1 -> P 0.8, R 1, F1 8/9; lowering to 0.1 adds the FP (F1 0.8); 0.6 loses a TP (0.75).
    result = evaluate(*_f1_case(), NAMES)
    assert result.best_conf == pytest.approx(0.2)
    assert result.best_f1 == pytest.approx(8 / 9)


def test_duplicate_detection_of_one_box_is_a_false_positive():
    box = [20, 20, 80, 90]
    result = evaluate([GroundTruth([box], [0])], [Prediction([box, box], [0.9, 0.8], [0, 0])], NAMES)
    assert (result.precision, result.recall) == pytest.approx((0.5, 1.0))
    assert result.best_conf == pytest.approx(0.9) and result.best_f1 == pytest.approx(1.0)
    assert result.confusion_matrix[0, 0] == 1 and result.confusion_matrix[BG, 0] == 1


# --- confusion matrix ----------------------------------------------------------------------------------


def test_wrong_class_lands_off_diagonal():
    box = [30, 40, 110, 90]
    result = evaluate([GroundTruth([box], [0])], [Prediction([box], [0.9], [1])], NAMES)
    cm = result.confusion_matrix
    assert cm.shape == (BG + 1, BG + 1)
    assert cm[0, 1] == 1 and cm.sum() == 1  # neither a miss nor a background FP: a confusion
    assert result.per_class["a"]["ap50"] == 0.0 and result.per_class["b"]["ap50"] is None
    assert (result.precision, result.recall) == (0.0, 0.0)


def test_false_positives_fill_background_row_and_misses_background_column():
    a_box, b_box = [10, 10, 60, 60], [20, 100, 90, 160]
    gts = [GroundTruth([a_box], [0]), GroundTruth([b_box], [1]), GroundTruth.empty()]
    preds = [
        Prediction([a_box, [120, 10, 180, 50], [120, 120, 190, 190]], [0.9, 0.8, 0.1], [0, 1, 2]),
        Prediction.empty(),  # the b box is missed
        Prediction([[5, 5, 40, 40]], [0.5], [0]),  # an image without defects still gets a FP
    ]
    cm = evaluate(gts, preds, NAMES, conf_threshold=0.25).confusion_matrix
    expected = np.zeros((BG + 1, BG + 1), dtype=int)
    expected[0, 0] = 1  # a found
    expected[1, BG] = 1  # b missed
    expected[BG, 1] = 1  # FP "b" at 0.8
    expected[BG, 0] = 1  # FP "a" on the clean image
    np.testing.assert_array_equal(cm, expected)  # the 0.1 "c" is below conf and not counted


def test_confusion_matches_each_gt_to_its_best_iou_prediction_regardless_of_class():
    gt_box = [0, 0, 100, 100]
    same_class_lower_iou = [0, 0, 100, 60]  # IoU 0.6
    other_class_higher_iou = [0, 0, 100, 90]  # IoU 0.9
    preds = [Prediction([same_class_lower_iou, other_class_higher_iou], [0.9, 0.8], [0, 3])]
    cm = evaluate([GroundTruth([gt_box], [0])], preds, NAMES).confusion_matrix
    assert cm[0, 3] == 1 and cm[BG, 0] == 1 and cm.sum() == 2


# --- degenerate sets -----------------------------------------------------------------------------------


def test_no_predictions_at_all_gives_zero_map(neu_records, capsys):
    gts = ground_truth_from_records(neu_records, NEU_DET_CLASSES)
    result = evaluate(gts, [Prediction.empty() for _ in gts], NEU_DET_CLASSES)
    assert result.map50 == 0.0 and result.map50_95 == 0.0
    assert (result.precision, result.recall, result.f1, result.best_f1) == (0.0, 0.0, 0.0, 0.0)
    cm = result.confusion_matrix
    assert cm[:-1, -1].sum() == sum(len(g.labels) for g in gts) == cm.sum()
    assert capsys.readouterr().out == ""  # pycocotools' progress prints are silenced


def test_images_without_ground_truth():
    gts = [GroundTruth.empty(), GroundTruth.empty()]
    preds = [Prediction([[0, 0, 10, 10]], [0.9], [2]), Prediction.empty()]
    result = evaluate(gts, preds, NAMES)
    assert np.isnan(result.map50) and np.isnan(result.map50_95)
    assert all(v["ap50"] is None for v in result.per_class.values())
    assert result.confusion_matrix[BG, 2] == 1 and result.precision == 0.0
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["map50"] is None and payload["images"] == 2


def test_to_dict_has_the_cli_keys():
    result = evaluate(*_f1_case(), NAMES)
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    required = {
        "images",
        "map50",
        "map50_95",
        "per_class",
        "precision",
        "recall",
        "f1",
        "best_conf",
        "best_f1",
    }
    assert required | {"confusion_matrix"} <= payload.keys()
    assert set(payload["per_class"]) == set(NAMES)
    assert {"ap50", "ap"} <= payload["per_class"]["a"].keys()
    assert payload["confusion_matrix"] == result.confusion_matrix.tolist()


# --- plots ---------------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000


def test_evaluation_plots_write_pngs(tmp_path):
    result = evaluate(*_f1_case(), NAMES)
    pr = plot_pr_curves(result, tmp_path / "plots" / "pr.png")
    assert pr == tmp_path / "plots" / "pr.png"
    _assert_png(pr)
    _assert_png(plot_confusion_matrix(result, tmp_path / "cm.png"))
    _assert_png(plot_confusion_matrix(result, tmp_path / "cm_counts.png", normalize=False))


def test_training_curves_tolerate_missing_values(tmp_path):
    rows = [
        {"epoch": 1, "train_loss": 3.2, "map50": None, "map50_95": None},
        {"epoch": 2, "train_loss": 2.5, "val_loss": 2.9, "map50": 0.21, "map50_95": 0.08},
        {"epoch": 3, "train_loss": 2.1, "val_loss": 2.6, "map50": 0.35, "map50_95": 0.14},
    ]
    _assert_png(plot_training_curves(rows, tmp_path / "curves.png"))
    _assert_png(plot_training_curves(rows[:1], tmp_path / "first_epoch.png"))
