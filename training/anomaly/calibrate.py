"""Thresholds from a false-alarm budget, anomaly regions, and the validation figures of a scorer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from training.anomaly.base import AnomalyScorer, tile_score

PIXEL_STEP = 2  # pixel AUROC on every 2nd pixel each way: same figure to 3 decimals, 4x less memory


def threshold_for_budget(clean_scores: Sequence[float], per_1000: float) -> float:
    """The lowest threshold at which at most ``per_1000`` of every 1,000 clean tiles score above it.

    An alarm is ``score > threshold``. With fewer than ``1000 / per_1000`` tiles the budget allows no
    alarm at all and the threshold is the highest clean score: the budget is then only bounded by
    ``1 / len(clean_scores)``, which the caller should report.
    """
    if not clean_scores:
        raise ValueError("threshold_for_budget: no clean scores")
    if per_1000 < 0:
        raise ValueError(f"per_1000: {per_1000} is not >= 0")
    ordered = sorted(clean_scores, reverse=True)
    allowed = math.floor(per_1000 * len(ordered) / 1000.0)
    return float(ordered[min(allowed, len(ordered) - 1)])


EVIDENCE_QUANTILE = 0.5
"""Default level of ``evidence_level``: below the first quantile that cost the shipped model any reject
recall on validation (0.65; ``bench/bench_anomaly_veto.py``), with a margin."""


def evidence_level(clean_scores: Sequence[float], quantile: float = EVIDENCE_QUANTILE) -> float:
    """The anomaly a detection's box must reach to stand: this quantile of clean tiles' scores. A box on
    steel no more unusual than that share of clean tiles is texture the detector mistook, not a defect."""
    if not clean_scores:
        raise ValueError("evidence_level: no clean scores")
    if not 0.0 <= quantile < 1.0:
        raise ValueError(f"quantile: {quantile} is not in [0, 1)")
    return float(np.quantile(np.asarray(clean_scores, np.float64), quantile))


def false_alarms_per_1000(scores: Sequence[float], threshold: float) -> float:
    if not scores:
        return 0.0
    return 1000.0 * sum(s > threshold for s in scores) / len(scores)


@dataclass(frozen=True, slots=True)
class AnomalyRegion:
    """A connected area of the map above the threshold: ``xyxy`` in tile pixels, its peak score."""

    xyxy: tuple[int, int, int, int]
    score: float
    area_px: int


def anomaly_regions(
    anomaly_map: np.ndarray, threshold: float, *, min_area_px: int = 16
) -> list[AnomalyRegion]:
    """Connected components of ``map > threshold`` (8-connected), largest peak first."""
    mask = (anomaly_map > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    regions = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area_px:
            continue
        peak = float(anomaly_map[labels == i].max())
        regions.append(AnomalyRegion((x, y, x + w, y + h), peak, area))
    return sorted(regions, key=lambda r: -r.score)


def tile_scores(scorer: AnomalyScorer, tiles: Sequence[np.ndarray]) -> list[float]:
    return [tile_score(m) for m in scorer.maps(tiles)]


def pixel_auroc(maps: Sequence[np.ndarray], boxes_per_tile: Sequence[np.ndarray]) -> float:
    """ROC AUC of map values inside (positive) vs outside boxes, over defect tiles (scikit-learn)."""
    from sklearn.metrics import roc_auc_score  # scikit-learn takes ~1 s to import: only validation scores

    values, labels = [], []
    for amap, boxes in zip(maps, boxes_per_tile, strict=True):
        inside = np.zeros(amap.shape, dtype=bool)
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float32).reshape(-1, 4):
            inside[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
        values.append(amap[::PIXEL_STEP, ::PIXEL_STEP].ravel())
        labels.append(inside[::PIXEL_STEP, ::PIXEL_STEP].ravel())
    return float(roc_auc_score(np.concatenate(labels), np.concatenate(values)))


def tile_auroc(defect_scores: Sequence[float], clean_scores: Sequence[float]) -> float:
    from sklearn.metrics import roc_auc_score  # scikit-learn takes ~1 s to import: only validation scores

    labels = [1] * len(defect_scores) + [0] * len(clean_scores)
    return float(roc_auc_score(labels, [*defect_scores, *clean_scores]))
