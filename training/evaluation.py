"""Detection evaluation: COCO mAP through pycocotools, plus the operating-point numbers a line needs.

AP is never hand-written here: mAP50, mAP50-95, the per-class APs and the PR curves all come from
``pycocotools.cocoeval.COCOeval`` (bbox, area "all", maxDets ``[1, 10, 100]``), fed COCO dicts built in
memory. What COCO does not give, and a deployment needs, is computed beside it:

* precision / recall / F1 at one confidence threshold, **micro-averaged** over classes (total TP over all
  classes against total predictions and total ground truth), so a rare class does not swing the number;
* ``best_conf`` / ``best_f1``: the confidence that maximises that F1, swept over every distinct score;
* a ``(C+1, C+1)`` detection confusion matrix (rows ground truth, columns prediction, last row/column
  background);
* the line-level figures of :mod:`training.line_figures` (reject recall, strays per 100 images).

The "operating point" is a score threshold per class (a bundle's calibrated ``thresholds.per_class``, or
one ``conf_threshold`` for every class); P/R/F1, the confusion matrix and the line figures use it.

Boxes are 0-based float pixels ``xyxy`` with ``x2``/``y2`` exclusive (see :mod:`datasets.model`), so COCO's
``xywh`` is ``(x1, y1, x2 - x1, y2 - y1)`` with no +1, and pycocotools' IoU agrees with :func:`box_iou`.
A class with no ground truth in the set has no AP (COCO's -1): it is ``None``, excluded from the means,
and ``null`` in JSON. A class with ground truth and no predictions has AP 0.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from training.eval_inputs import (
    GroundTruth,
    Prediction,
    box_iou,
    ground_truth_from_records,
    predictions_from_outputs,
)
from training.line_figures import LineFigures, class_thresholds, kept, line_figures

CocoRecord = dict[str, Any]  # one image, category or annotation of COCO's JSON, as pycocotools reads it

__all__ = [
    "EvalResult",
    "GroundTruth",
    "Prediction",
    "box_iou",
    "evaluate",
    "ground_truth_from_records",
    "predictions_from_outputs",
]

MAX_DETS: tuple[int, int, int] = (1, 10, 100)  # COCO's default; AP is read at the last one


@dataclass
class EvalResult:
    """Everything one evaluation produced.

    ``map50``/``map50_95`` are NaN when no class has ground truth. ``per_class[name]`` holds ``ap50``, ``ap``
    (IoU .50:.95; both ``None`` for a class without ground truth) and ``gt`` (its box count).
    ``precision``/``recall``/``f1`` are micro-averaged at the operating point (``score >=
    operating_point[class]``; ``conf_threshold`` for every class unless thresholds per class were given)
    and ``IoU >= iou_threshold``; ``best_conf`` is the lowest kept score of the sweep's best F1.
    ``line`` holds reject recall and strays at the operating point.
    ``confusion_matrix`` is ``(C+1, C+1)`` ints: rows ground truth, columns prediction, ``C`` background.
    ``pr_curves[name]`` is COCO's interpolated precision ``(101,)`` at IoU .50 on ``recall_grid`` (NaN
    without ground truth).
    """

    images: int
    class_names: list[str]
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, Any]]
    precision: float
    recall: float
    f1: float
    conf_threshold: float
    iou_threshold: float
    best_conf: float
    best_f1: float
    confusion_matrix: np.ndarray
    operating_point: dict[str, float]
    line: LineFigures
    recall_grid: np.ndarray = field(repr=False)
    pr_curves: dict[str, np.ndarray] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-serialisable summary (NaN becomes ``null``), the shape of ``steel eval --json``."""
        return {
            "images": self.images,
            "map50": _json_float(self.map50),
            "map50_95": _json_float(self.map50_95),
            "per_class": {
                name: {"ap50": _json_float(v["ap50"]), "ap": _json_float(v["ap"]), "gt": int(v["gt"])}
                for name, v in self.per_class.items()
            },
            "precision": _json_float(self.precision),
            "recall": _json_float(self.recall),
            "f1": _json_float(self.f1),
            "conf_threshold": float(self.conf_threshold),
            "iou_threshold": float(self.iou_threshold),
            "best_conf": _json_float(self.best_conf),
            "best_f1": _json_float(self.best_f1),
            "confusion_matrix": self.confusion_matrix.astype(int).tolist(),
            "operating_point": dict(self.operating_point),
            **self.line.to_dict(),
        }


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{what} has class indices outside 0..{num_classes - 1}: {np.unique(labels).tolist()}"
        )


def _coco(images: list[CocoRecord], categories: list[CocoRecord], annotations: list[CocoRecord]) -> COCO:
    """A COCO index over in-memory dicts. Built directly (not ``loadRes``) so zero detections work too."""
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _coco_box(box: np.ndarray) -> tuple[list[float], float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    return [x1, y1, w, h], max(w, 0.0) * max(h, 0.0)


def _run_cocoeval(
    gts: Sequence[GroundTruth], preds: Sequence[Prediction], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """COCO's ``eval['precision']`` at area "all", maxDets 100: ``(T=10, R=101, K)``, and ``stats``."""
    images = [{"id": i + 1} for i in range(len(gts))]  # width/height are not used by bbox evaluation
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    gt_anns: list[CocoRecord] = []
    for i, gt in enumerate(gts):
        for box, label in zip(gt.boxes, gt.labels, strict=True):
            bbox, area = _coco_box(box)
            gt_anns.append(
                {
                    "id": len(gt_anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": bbox,
                    "area": area,
                    "iscrowd": 0,
                }
            )
    dt_anns: list[CocoRecord] = []
    for i, pred in enumerate(preds):
        for box, score, label in zip(pred.boxes, pred.scores, pred.labels, strict=True):
            bbox, area = _coco_box(box)
            dt_anns.append(
                {
                    "id": len(dt_anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": bbox,
                    "area": area,
                    "score": float(score),
                    "iscrowd": 0,
                }
            )
    coco_gt = _coco(images, categories, gt_anns)
    coco_dt = _coco(images, categories, dt_anns)
    ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
    ev.params.maxDets = list(MAX_DETS)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    area_all = ev.params.areaRngLbl.index("all")
    max_det = ev.params.maxDets.index(MAX_DETS[-1])
    return ev.eval["precision"][:, :, :, area_all, max_det], np.asarray(ev.stats, dtype=np.float64)


def match_by_score(gt: GroundTruth, pred: Prediction, iou_threshold: float) -> np.ndarray:
    """TP flags ``(M,)`` for ``pred``: by descending score, each takes the best-IoU free GT of its class."""
    tp = np.zeros(len(pred.scores), dtype=bool)
    if len(gt.labels) == 0 or len(pred.scores) == 0:
        return tp
    iou = box_iou(pred.boxes, gt.boxes)
    iou[pred.labels[:, None] != gt.labels[None, :]] = -1.0
    taken = np.zeros(len(gt.labels), dtype=bool)
    for d in np.argsort(-pred.scores, kind="stable"):
        cand = np.where(taken, -1.0, iou[d])
        g = int(np.argmax(cand))
        if cand[g] >= iou_threshold:
            taken[g] = True
            tp[d] = True
    return tp


def _f1(tp: float, n_pred: float, n_gt: float) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gt if n_gt else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def best_f1_threshold(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> tuple[float, float]:
    """The F1-maximising threshold over every distinct score (ties: the higher threshold)."""
    if scores.size == 0:
        return 0.0, 0.0
    order = np.argsort(-scores, kind="stable")
    s, cum_tp = scores[order], np.cumsum(tp[order])
    last = np.r_[s[1:] != s[:-1], True]  # a threshold keeps every prediction tied with it
    n_pred = np.arange(1, s.size + 1)[last]
    p = cum_tp[last] / n_pred
    r = cum_tp[last] / n_gt if n_gt else np.zeros_like(p)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    best = int(np.argmax(f1))
    return float(s[last][best]), float(f1[best])


def _confusion(
    gt: GroundTruth, pred: Prediction, num_classes: int, iou_threshold: float, out: np.ndarray
) -> None:
    """Add one image to ``out``: class-agnostic one-to-one matching by descending IoU."""
    bg = num_classes
    iou = box_iou(gt.boxes, pred.boxes)
    gi, di = np.nonzero(iou >= iou_threshold)
    gt_used = np.zeros(len(gt.labels), dtype=bool)
    pred_used = np.zeros(len(pred.labels), dtype=bool)
    for k in np.argsort(-iou[gi, di], kind="stable"):
        g, d = gi[k], di[k]
        if not gt_used[g] and not pred_used[d]:
            gt_used[g] = pred_used[d] = True
            out[gt.labels[g], pred.labels[d]] += 1
    np.add.at(out[:, bg], gt.labels[~gt_used], 1)  # views: unmatched boxes land in the background column
    np.add.at(out[bg], pred.labels[~pred_used], 1)  # and unmatched detections in its row


def _nan_mean(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _check_inputs(gts: Sequence[GroundTruth], preds: Sequence[Prediction], num_classes: int) -> None:
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth images but {len(preds)} prediction images")
    for i, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        _check_labels(gt.labels, num_classes, f"ground truth of image {i}")
        _check_labels(pred.labels, num_classes, f"predictions of image {i}")


@dataclass(frozen=True)
class _CocoScores:
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, Any]]
    pr_curves: dict[str, np.ndarray]
    recall_grid: np.ndarray


def _coco_scores(gts: Sequence[GroundTruth], preds: Sequence[Prediction], names: list[str]) -> _CocoScores:
    """mAP, per-class AP and PR curves, all from COCOeval over every prediction."""
    num_classes = len(names)
    precision, stats = _run_cocoeval(gts, preds, num_classes)
    gt_counts = _gt_counts(gts, num_classes)
    per_class: dict[str, dict[str, Any]] = {}
    pr_curves: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        ap50, ap = _nan_mean(precision[0, :, k]), _nan_mean(precision[:, :, k])
        per_class[name] = {
            "ap50": None if math.isnan(ap50) else ap50,
            "ap": None if math.isnan(ap) else ap,
            "gt": int(gt_counts[k]),
        }
        curve = precision[0, :, k].astype(np.float64)
        pr_curves[name] = np.where(curve > -1, curve, np.nan)
    # COCO's summary means are the same means over valid cells; -1 there means "no class has ground truth".
    map50_95, map50 = (float(v) if v > -1 else float("nan") for v in stats[:2])
    return _CocoScores(map50, map50_95, per_class, pr_curves, np.linspace(0.0, 1.0, precision.shape[1]))


def _gt_counts(gts: Sequence[GroundTruth], num_classes: int) -> np.ndarray:
    return np.bincount(
        np.concatenate([g.labels for g in gts] or [np.zeros(0, np.int64)]), minlength=num_classes
    )


@dataclass(frozen=True)
class _OperatingScores:
    precision: float
    recall: float
    f1: float
    best_conf: float
    best_f1: float
    confusion_matrix: np.ndarray


def _operating_scores(
    gts: Sequence[GroundTruth],
    preds: Sequence[Prediction],
    num_classes: int,
    *,
    thresholds: np.ndarray,
    iou_threshold: float,
) -> _OperatingScores:
    """Micro P/R/F1 and the confusion matrix at ``thresholds`` (per class), and the best-F1 sweep."""
    tp_all, scores_all, kept_all = [], [], []
    cm = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for gt, pred in zip(gts, preds, strict=True):
        tp_all.append(match_by_score(gt, pred, iou_threshold))
        scores_all.append(pred.scores)
        keep = kept(pred, thresholds)
        kept_all.append(keep)
        _confusion(
            gt,
            Prediction(pred.boxes[keep], pred.scores[keep], pred.labels[keep]),
            num_classes,
            iou_threshold,
            cm,
        )
    tp = np.concatenate(tp_all) if tp_all else np.zeros(0, dtype=bool)
    scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
    keep_all = np.concatenate(kept_all) if kept_all else np.zeros(0, dtype=bool)
    n_gt = int(_gt_counts(gts, num_classes).sum())
    p, r, f1 = _f1(float(tp[keep_all].sum()), float(keep_all.sum()), float(n_gt))
    best_conf, best_f1 = best_f1_threshold(scores, tp, n_gt)
    return _OperatingScores(p, r, f1, best_conf, best_f1, cm)


def evaluate(
    gts: Sequence[GroundTruth],
    preds: Sequence[Prediction],
    class_names: Sequence[str],
    *,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    per_class_thresholds: Mapping[str, float] | None = None,
) -> EvalResult:
    """Score ``preds`` against ``gts`` (same image order).

    mAP and PR curves use every prediction (COCO keeps the top 100 per image and class); precision, recall,
    F1, the confusion matrix and the line figures use the operating point: ``score >=
    per_class_thresholds[class]`` where given, else ``conf_threshold`` (and ``IoU >= iou_threshold``).

    Raises:
        ValueError: the lists differ in length or a label is outside ``class_names``.
    """
    names = list(class_names)
    _check_inputs(gts, preds, len(names))
    thresholds = class_thresholds(names, per_class_thresholds, conf_threshold)
    coco = _coco_scores(gts, preds, names)
    op = _operating_scores(gts, preds, len(names), thresholds=thresholds, iou_threshold=iou_threshold)
    return EvalResult(
        images=len(gts),
        class_names=names,
        map50=coco.map50,
        map50_95=coco.map50_95,
        per_class=coco.per_class,
        precision=op.precision,
        recall=op.recall,
        f1=op.f1,
        conf_threshold=float(conf_threshold),
        iou_threshold=float(iou_threshold),
        best_conf=op.best_conf,
        best_f1=op.best_f1,
        confusion_matrix=op.confusion_matrix,
        operating_point={name: float(t) for name, t in zip(names, thresholds, strict=True)},
        line=line_figures(gts, preds, names, thresholds),
        recall_grid=coco.recall_grid,
        pr_curves=coco.pr_curves,
    )
