"""What the evaluator scores: one image's ground truth and predictions, and the IoU they are matched by.

Boxes are 0-based float pixels ``xyxy`` with ``x2``/``y2`` exclusive (see :mod:`datasets.model`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets.model import ImageRecord


def _as_boxes(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what}.boxes must have shape (N, 4), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}.boxes contain non-finite values")
    return arr


def _as_vector(value: Any, n: int, dtype: type, what: str) -> np.ndarray:
    arr: np.ndarray = np.asarray(value, dtype=dtype).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{what} has {arr.shape[0]} entries for {n} boxes")
    return arr


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The labelled boxes of one image: ``boxes (N, 4)`` xyxy pixels, ``labels (N,)`` class indices.

    Zero boxes is legal (defect-free steel). Inputs are copied to float64 / int64 arrays.
    """

    boxes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = _as_boxes(self.boxes, "GroundTruth")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(
            self, "labels", _as_vector(self.labels, len(boxes), np.int64, "GroundTruth.labels")
        )

    @classmethod
    def empty(cls) -> GroundTruth:
        return cls(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class Prediction:
    """The detections of one image: ``boxes (M, 4)`` xyxy pixels, ``scores (M,)``, ``labels (M,)``."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = _as_boxes(self.boxes, "Prediction")
        scores = _as_vector(self.scores, len(boxes), np.float64, "Prediction.scores")
        if not np.isfinite(scores).all():
            raise ValueError("Prediction.scores contain non-finite values")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", _as_vector(self.labels, len(boxes), np.int64, "Prediction.labels"))

    @classmethod
    def empty(cls) -> Prediction:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; avoids importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def predictions_from_outputs(outputs: Sequence[Mapping[str, Any]]) -> list[Prediction]:
    """Model outputs in the torchvision contract (``{boxes, scores, labels}`` per image) as predictions."""
    return [
        Prediction(_to_numpy(o["boxes"]), _to_numpy(o["scores"]), _to_numpy(o["labels"])) for o in outputs
    ]


def ground_truth_from_records(
    records: Sequence[ImageRecord], class_names: Sequence[str]
) -> list[GroundTruth]:
    """One :class:`GroundTruth` per record, labels mapped to indices of ``class_names``.

    Raises:
        ValueError: a box label is not in ``class_names`` (names come from config, never discovered).
    """
    index = {name: i for i, name in enumerate(class_names)}
    out: list[GroundTruth] = []
    for rec in records:
        unknown = sorted({b.label for b in rec.boxes if b.label not in index})
        if unknown:
            raise ValueError(f"{rec.name}: labels {unknown} are not in class_names {list(class_names)}")
        boxes = np.array([b.xyxy for b in rec.boxes], dtype=np.float64).reshape(-1, 4)
        labels = np.array([index[b.label] for b in rec.boxes], dtype=np.int64)
        out.append(GroundTruth(boxes, labels))
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair: ``a (N, 4)`` and ``b (M, 4)`` xyxy (x2 exclusive) give ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    iou: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou
