"""The figures a mill judges a detector by: what escapes the reject rule, and what it rejects for nothing.

mAP ranks detections; a line only sees the reject rule's verdict per image at one operating point (a
score threshold per class). Two figures follow from that verdict, computed here by hand because no
library defines them (they are the issue's definitions, not COCO's):

* ``reject_recall``: the share of images with at least one annotated defect on which the rule fires
  (at least one detection at or above its class's threshold), overall and per class of the annotated
  defect (an image with boxes of two classes counts for both);
* ``stray_per_100_images``: kept detections that overlap no annotated box (IoU below
  :data:`STRAY_IOU` with every one, whatever its class), per 100 images.

An image without annotated boxes counts for strays but not for recall.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from training.eval_inputs import GroundTruth, Prediction, box_iou

STRAY_IOU = 0.05
"""A detection with IoU below this against every annotated box is a stray (it points at nothing)."""


def class_thresholds(
    class_names: Sequence[str], per_class: Mapping[str, float] | None, default: float
) -> np.ndarray:
    """``(C,)`` score thresholds in class order: ``per_class[name]`` where given, else ``default``."""
    per_class = per_class or {}
    return np.array([float(per_class.get(name, default)) for name in class_names], dtype=np.float64)


def kept(pred: Prediction, thresholds: np.ndarray) -> np.ndarray:
    """``(M,)`` mask of the detections the operating point keeps: ``score >= thresholds[label]``."""
    return pred.scores >= thresholds[pred.labels] if len(pred.scores) else np.zeros(0, dtype=bool)


@dataclass(frozen=True)
class LineFigures:
    """Reject recall and strays at one operating point.

    ``reject_recall`` is NaN without defective images; ``reject_recall_per_class[name]`` is ``None`` for
    a class no image is annotated with. ``defective_images_per_class`` counts the images behind each.
    """

    images: int
    defective_images: int
    rejected_defective_images: int
    reject_recall: float
    reject_recall_per_class: dict[str, float | None]
    defective_images_per_class: dict[str, int]
    stray_detections: int
    stray_per_100_images: float

    def to_dict(self) -> dict[str, float | int | None | dict[str, float | None] | dict[str, int]]:
        return {
            "reject_recall": None if math.isnan(self.reject_recall) else self.reject_recall,
            "reject_recall_per_class": dict(self.reject_recall_per_class),
            "defective_images": self.defective_images,
            "rejected_defective_images": self.rejected_defective_images,
            "defective_images_per_class": dict(self.defective_images_per_class),
            "stray_detections": self.stray_detections,
            "stray_per_100_images": self.stray_per_100_images,
        }


def strays(gt: GroundTruth, pred: Prediction) -> np.ndarray:
    """``(M,)`` mask of detections whose IoU with every annotated box of the image is below STRAY_IOU."""
    if len(gt.labels) == 0:
        return np.ones(len(pred.scores), dtype=bool)
    mask: np.ndarray = np.all(box_iou(pred.boxes, gt.boxes) < STRAY_IOU, axis=1)
    return mask


def line_figures(
    gts: Sequence[GroundTruth],
    preds: Sequence[Prediction],
    class_names: Sequence[str],
    thresholds: np.ndarray,
) -> LineFigures:
    """Reject recall and strays of ``preds`` (same image order as ``gts``) at per-class ``thresholds``."""
    names = list(class_names)
    per_class_images = np.zeros(len(names), dtype=np.int64)
    per_class_rejected = np.zeros(len(names), dtype=np.int64)
    defective = rejected = stray = 0
    for gt, pred in zip(gts, preds, strict=True):
        keep = kept(pred, thresholds)
        fires = bool(keep.any())
        stray += int(strays(gt, pred)[keep].sum())
        if len(gt.labels) == 0:
            continue
        defective += 1
        rejected += fires
        present = np.unique(gt.labels)
        per_class_images[present] += 1
        per_class_rejected[present] += fires
    n = len(gts)
    return LineFigures(
        images=n,
        defective_images=defective,
        rejected_defective_images=rejected,
        reject_recall=rejected / defective if defective else float("nan"),
        reject_recall_per_class={
            name: (float(per_class_rejected[k] / per_class_images[k]) if per_class_images[k] else None)
            for k, name in enumerate(names)
        },
        defective_images_per_class={name: int(per_class_images[k]) for k, name in enumerate(names)},
        stray_detections=stray,
        stray_per_100_images=100.0 * stray / n if n else 0.0,
    )
