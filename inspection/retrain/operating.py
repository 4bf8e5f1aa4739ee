"""Per-class operating points: what the line sees at each model's alarm thresholds, and how the challenger's
thresholds are chosen before it is judged.

The interface the gate uses is three functions over a model's predictions on a labelled set:

* :func:`match_predictions` matches once (score order, same class, IoU >= 0.5, each box once);
* :func:`calibrate_thresholds` picks, per class, the highest threshold that still finds ``target_recall``
  of that class's boxes on calibration data (never the fixed set);
* :func:`rejects_at` counts, per class at given thresholds, the boxes caught (reject recall) and the
  detections that overlap no defect at all (false rejects: good steel the line would throw out).

Written against what exists today (``training.evaluation.box_iou``); a per-class calibration in
``training/`` (issue 12) can replace :func:`calibrate_thresholds`, and per-class thresholds in the bundle
manifest replace :func:`bundle_thresholds`'s fallback, without changing the gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from training.evaluation import GroundTruth, Prediction, box_iou

if TYPE_CHECKING:  # the bundle module loads torch; the gate's pure parts must not
    from training.bundle import Bundle

IOU = 0.5
MIN_THRESHOLD = 0.01  # calibration never goes below this: a threshold of ~0 rejects every texture


@dataclass(frozen=True)
class ClassMatches:
    """One class's detections on a set: scores, whether each caught a box of the class, whether each
    overlaps no box at all; and the class's box count."""

    scores: np.ndarray
    caught: np.ndarray
    background: np.ndarray
    gt: int


@dataclass(frozen=True)
class ClassRejects:
    """One class at one threshold on one set."""

    threshold: float
    gt: int
    caught: int
    false_rejects: int
    images: int

    @property
    def recall(self) -> float | None:
        return self.caught / self.gt if self.gt else None

    @property
    def false_rejects_per_image(self) -> float:
        return self.false_rejects / self.images if self.images else 0.0

    def to_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "recall": self.recall}


@dataclass(frozen=True)
class Matched:
    """A model's predictions on a set, matched once; thresholds are applied afterwards."""

    class_names: tuple[str, ...]
    per_class: dict[str, ClassMatches]
    images: int


def _match_image(gt: GroundTruth, pred: Prediction) -> tuple[np.ndarray, np.ndarray]:
    """``(caught, background)`` flags per prediction of one image."""
    n = len(pred.scores)
    caught = np.zeros(n, dtype=bool)
    if n == 0 or len(gt.labels) == 0:
        return caught, np.ones(n, dtype=bool)
    iou = box_iou(pred.boxes, gt.boxes)
    background = iou.max(axis=1) < IOU
    same = np.where(pred.labels[:, None] == gt.labels[None, :], iou, -1.0)
    taken = np.zeros(len(gt.labels), dtype=bool)
    for d in np.argsort(-pred.scores, kind="stable"):  # greedy by score: a lower threshold keeps decisions
        candidates = np.where(taken, -1.0, same[d])
        g = int(np.argmax(candidates))
        if candidates[g] >= IOU:
            taken[g] = caught[d] = True
    return caught, background


def match_predictions(
    gts: Sequence[GroundTruth], preds: Sequence[Prediction], class_names: Sequence[str]
) -> Matched:
    """Match every image's predictions once (same image order in both lists)."""
    scores: list[list[np.ndarray]] = [[] for _ in class_names]
    caught: list[list[np.ndarray]] = [[] for _ in class_names]
    background: list[list[np.ndarray]] = [[] for _ in class_names]
    counts = np.zeros(len(class_names), dtype=np.int64)
    for gt, pred in zip(gts, preds, strict=True):
        hit, bg = _match_image(gt, pred)
        counts += np.bincount(gt.labels, minlength=len(class_names))
        for k in range(len(class_names)):
            mine = pred.labels == k
            scores[k].append(pred.scores[mine])
            caught[k].append(hit[mine])
            background[k].append(bg[mine])
    per_class = {
        name: ClassMatches(
            np.concatenate(scores[k]) if scores[k] else np.zeros(0),
            np.concatenate(caught[k]) if caught[k] else np.zeros(0, bool),
            np.concatenate(background[k]) if background[k] else np.zeros(0, bool),
            int(counts[k]),
        )
        for k, name in enumerate(class_names)
    }
    return Matched(tuple(class_names), per_class, len(gts))


def calibrate_thresholds(
    matched: Matched, *, target_recall: float, fallback: Mapping[str, float]
) -> dict[str, float]:
    """Per class, the highest threshold whose recall on ``matched`` reaches ``target_recall``; when no
    threshold reaches it, the one giving the class its best recall (never below ``MIN_THRESHOLD``); a class
    without boxes in the calibration data keeps its ``fallback`` threshold."""
    out: dict[str, float] = {}
    for name in matched.class_names:
        m = matched.per_class[name]
        if m.gt == 0 or not m.caught.any():
            out[name] = float(fallback[name]) if m.gt == 0 else MIN_THRESHOLD
            continue
        hits = np.sort(m.scores[m.caught])[::-1]  # scores of the catching detections, high to low
        need = int(np.ceil(target_recall * m.gt - 1e-9))
        threshold = hits[min(need, len(hits)) - 1]
        out[name] = max(float(threshold), MIN_THRESHOLD)
    return out


def rejects_at(matched: Matched, thresholds: Mapping[str, float]) -> dict[str, ClassRejects]:
    """What the line would do at ``thresholds``, per class."""
    out = {}
    for name in matched.class_names:
        m, t = matched.per_class[name], float(thresholds[name])
        kept = m.scores >= t
        out[name] = ClassRejects(
            threshold=t,
            gt=m.gt,
            caught=int((m.caught & kept).sum()),
            false_rejects=int((m.background & kept).sum()),
            images=matched.images,
        )
    return out


def bundle_thresholds(bundle: Bundle) -> dict[str, float]:
    """A model's operating point as it runs on the line: the manifest's per-class thresholds
    (``thresholds.per_class``, written by ``steel calibrate-thresholds`` or a retrain run), else the
    bundle's one score threshold for every class."""
    thresholds = bundle.class_thresholds(None)
    return {name: float(t) for name, t in zip(bundle.class_names, thresholds, strict=True)}
