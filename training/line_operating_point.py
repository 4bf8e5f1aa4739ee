"""The ``line`` operating point: the fewest stray detections at which the reject rule still catches enough.

The ``f1`` and ``recall`` methods (:mod:`training.operating_point`) choose each class's threshold alone,
by box-level figures; a line is judged by two image-level ones (:mod:`training.line_figures`): what
escapes the reject rule and what it rejects for nothing. This method optimises those directly, for the
fewest strays at which overall reject recall stays >= ``target_reject`` and every class's >=
``target_class`` (a target the model cannot reach even at ``floor`` is lowered to what it reaches
there). Two greedy searches, the better result kept:

1. from nothing rejected, lower one class's threshold at a time, each step the one serving the most unmet
   targets per stray it adds (the cost-effectiveness rule of greedy set cover), until the targets hold;
2. from there, and separately from every class at ``floor``, raise thresholds just past their lowest
   kept stray while the targets hold (the step letting the fewest defective images escape first).

The second alone gets stuck: an early free step can make a later stray the only thing rejecting some
image. Not exhaustive (the joint search over six thresholds is combinatorial). Hand-written because no
library optimises these two figures (they are the issue's definitions). Zero-box images (clean tiles,
``steel calibrate-thresholds --clean``) count for strays only, so the search weighs clean steel too.
Figures chosen on one half of the validation images and scored on the other:
``python bench/bench_operating_point.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.eval_inputs import GroundTruth, Prediction
from training.line_figures import strays


@dataclass(frozen=True)
class Detections1D:
    """Every detection at or above the floor, flattened: image index, class, score, and whether it is a
    stray; plus which images are defective and which hold each class."""

    image: np.ndarray
    label: np.ndarray
    score: np.ndarray
    stray: np.ndarray
    defective: np.ndarray  # (images,) bool
    holds_class: np.ndarray  # (classes, images) bool

    @classmethod
    def of(
        cls, gts: Sequence[GroundTruth], preds: Sequence[Prediction], classes: int, floor: float
    ) -> Detections1D:
        if not gts:
            raise ValueError("no images to choose an operating point on")
        parts: list[tuple[np.ndarray, ...]] = []
        for i, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
            keep = pred.scores >= floor
            parts.append(
                (np.full(int(keep.sum()), i), pred.labels[keep], pred.scores[keep], strays(gt, pred)[keep])
            )
        image, label, score, stray = (np.concatenate(column) for column in zip(*parts, strict=True))
        holds = np.array([[bool((gt.labels == k).any()) for gt in gts] for k in range(classes)], dtype=bool)
        defective = np.array([len(gt.labels) > 0 for gt in gts], dtype=bool)
        return cls(
            image.astype(np.int64), label.astype(np.int64), score, stray.astype(bool), defective, holds
        )

    def rejected(self, thresholds: np.ndarray) -> np.ndarray:
        """``(images,)``: the reject rule fires (some detection at or above its class's threshold)."""
        fires = np.zeros(len(self.defective), dtype=bool)
        fires[self.image[self.score >= thresholds[self.label]]] = True
        return fires

    def recalls(self, thresholds: np.ndarray) -> tuple[float, np.ndarray]:
        """Overall reject recall and per class (1.0 for a class no image holds)."""
        fires = self.rejected(thresholds)
        overall = float(fires[self.defective].mean()) if self.defective.any() else 1.0
        per_class = np.array([fires[m].mean() if m.any() else 1.0 for m in self.holds_class])
        return overall, per_class

    def stray_count(self, thresholds: np.ndarray) -> int:
        return int(self.stray[self.score >= thresholds[self.label]].sum())


def _step_past_lowest_stray(d: Detections1D, thresholds: np.ndarray, k: int) -> np.ndarray | None:
    """Class ``k``'s threshold raised just past its lowest kept stray (4 decimals, rounded up)."""
    mine = d.stray & (d.label == k) & (d.score >= thresholds[k])
    if not mine.any():
        return None
    lowest = float(d.score[mine].min())
    step = round(math.floor(lowest * 1e4) / 1e4 + 1e-4, 4)
    step = step if step > lowest else round(step + 1e-4, 4)  # 0.3 * 1e4 is 2999.99...
    if step > 1.0:  # a stray scored 1.0 cannot be passed: a threshold is a score
        return None
    raised = thresholds.copy()
    raised[k] = step
    return raised


@dataclass(frozen=True)
class Needs:
    """The reject recall to keep: overall and per class (already lowered to what the floor reaches)."""

    overall: float
    per_class: np.ndarray

    def met(self, d: Detections1D, thresholds: np.ndarray) -> bool:
        overall, per_class = d.recalls(thresholds)
        return overall >= self.overall - 1e-12 and bool((per_class >= self.per_class - 1e-12).all())

    def weights(self, d: Detections1D, thresholds: np.ndarray) -> np.ndarray:
        """Per image, how many unmet targets rejecting it would serve (0 for a clean image)."""
        overall, per_class = d.recalls(thresholds)
        short = per_class < self.per_class - 1e-12
        w = short.astype(np.float64) @ d.holds_class.astype(np.float64)
        return w + float(overall < self.overall - 1e-12) * d.defective


def _raise_past_strays(d: Detections1D, thresholds: np.ndarray, needs: Needs) -> np.ndarray:
    """Raise thresholds past strays, one at a time, while the needs stay met: the step letting the fewest
    defective images escape first, then the one removing the most strays."""
    while True:
        rejected_now = int(d.rejected(thresholds)[d.defective].sum())
        strays_now = d.stray_count(thresholds)
        best: tuple[tuple[int, int], np.ndarray] | None = None
        for k in range(len(thresholds)):
            raised = _step_past_lowest_stray(d, thresholds, k)
            if raised is None or not needs.met(d, raised):
                continue
            lost = rejected_now - int(d.rejected(raised)[d.defective].sum())
            key = (lost, -(strays_now - d.stray_count(raised)))
            if best is None or key < best[0]:
                best = (key, raised)
        if best is None:
            return thresholds
        thresholds = best[1]


def _best_lowering(d: Detections1D, thresholds: np.ndarray, needs: Needs) -> tuple[int, float] | None:
    """The (class, threshold) below the current one that serves the most unmet targets per stray added."""
    rejected = d.rejected(thresholds)
    weight = needs.weights(d, thresholds)
    best: tuple[float, float, int, float] | None = None
    for k in range(len(thresholds)):
        below = np.flatnonzero((d.label == k) & (d.score < thresholds[k]))
        if len(below) == 0:
            continue
        below = below[np.argsort(-d.score[below], kind="stable")]
        images = d.image[below]
        first = np.zeros(len(below), dtype=bool)
        first[np.unique(images, return_index=True)[1]] = True
        gain = np.cumsum(np.where(first & ~rejected[images], weight[images], 0.0))
        cost = np.cumsum(d.stray[below]) + 0.5
        j = int(np.argmax(gain / cost))
        if gain[j] > 0 and (best is None or (gain[j] / cost[j], gain[j]) > best[:2]):
            best = (float(gain[j] / cost[j]), float(gain[j]), k, float(d.score[below[j]]))
    return None if best is None else (best[2], best[3])


def _lower_from_the_top(d: Detections1D, needs: Needs, floor: float) -> np.ndarray:
    """From nothing rejected, lower one class's threshold at a time, by unmet targets served per stray
    added, until every need is met; thresholds rounded down to 4 decimals (never below ``floor``)."""
    thresholds = np.ones(d.holds_class.shape[0], dtype=np.float64)
    while not needs.met(d, thresholds):
        step = _best_lowering(d, thresholds, needs)
        if step is None:
            break
        thresholds[step[0]] = max(floor, math.floor(step[1] * 1e4) / 1e4)
    return thresholds


def line_thresholds(
    d: Detections1D, *, floor: float, target_reject: float, target_class: float
) -> tuple[np.ndarray, float, np.ndarray]:
    """The search described above; returns thresholds, overall and per-class reject recall."""
    at_floor = np.full(d.holds_class.shape[0], floor, dtype=np.float64)
    overall, per_class = d.recalls(at_floor)
    needs = Needs(min(target_reject, overall), np.minimum(target_class, per_class))
    starts = [at_floor]
    top = _lower_from_the_top(d, needs, floor)
    if needs.met(d, top):
        starts.append(top)
    ends = [_raise_past_strays(d, start.copy(), needs) for start in starts]
    rejected = [int(d.rejected(t)[d.defective].sum()) for t in ends]
    best = min(range(len(ends)), key=lambda i: (d.stray_count(ends[i]), -rejected[i]))
    overall, per_class = d.recalls(ends[best])
    return ends[best], overall, per_class
