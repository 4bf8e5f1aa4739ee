"""Pseudo-labels: a teacher's confident boxes added to the training side where the annotators drew none.

NEU-DET's annotators left some marks unlabelled (the clean-tile audit found streaks and spots beside
labelled defects), so a detector trained on it is taught to call those marks background. A stronger
teacher (the accuracy ensemble) finds many of them with high confidence; adding its confident boxes that
overlap no annotated box lets a fast student learn them as defects (self-training with hard labels, a
form of knowledge distillation that needs no change to the trainer). Validation images keep their
annotations exactly, so a student's scores stay comparable with every other run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from pydantic import Field

from datasets.detections import Detections
from datasets.model import AnnotatedSet, Box, ImageRecord
from datasets.settings import StrictModel
from training.eval_inputs import box_iou


class PseudoLabelRule(StrictModel):
    """Which teacher boxes become labels: scored at least ``min_score`` and overlapping every annotated
    box (of any class) by less than ``max_iou`` (above it the annotator already drew that defect)."""

    min_score: float = Field(0.5, gt=0, le=1)
    max_iou: float = Field(0.3, ge=0, le=1)
    min_side_px: float = Field(4.0, ge=0)  # slivers at the image edge teach nothing


@dataclass(frozen=True)
class PseudoLabelReport:
    """What the teacher added: per class, against what the annotators drew on the same images."""

    teacher: str
    rule: PseudoLabelRule
    train_images: int
    images_changed: int
    annotated: dict[str, int]
    added: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "rule": self.rule.model_dump()}


def teacher_boxes(
    record: ImageRecord, detections: Detections, class_names: Sequence[str], rule: PseudoLabelRule
) -> list[Box]:
    """The teacher's boxes on one image that the rule turns into labels, clipped to the image."""
    keep = detections.scores >= rule.min_score
    xyxy = detections.xyxy[keep].astype(np.float64)
    classes = detections.class_ids[keep]
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, record.width)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, record.height)
    big_enough = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) >= rule.min_side_px
    if record.boxes:
        annotated = np.array([b.xyxy for b in record.boxes], dtype=np.float64)
        new = box_iou(xyxy, annotated).max(axis=1) < rule.max_iou
    else:
        new = np.ones(len(xyxy), dtype=bool)
    chosen = np.flatnonzero(big_enough & new)
    return [
        Box(
            float(xyxy[i, 0]),
            float(xyxy[i, 1]),
            float(xyxy[i, 2]),
            float(xyxy[i, 3]),
            class_names[int(classes[i])],
        )
        for i in chosen
    ]


def with_pseudo_labels(
    aset: AnnotatedSet,
    train_names: set[str],
    detections: Mapping[str, Detections],
    rule: PseudoLabelRule,
    *,
    teacher: str,
) -> tuple[AnnotatedSet, PseudoLabelReport]:
    """``aset`` with the teacher's boxes added to its training images (``train_names``; each must have
    ``detections``), every other image unchanged; and what was added."""
    missing = sorted(train_names - set(detections))
    if missing:
        raise ValueError(f"no teacher detections for {len(missing)} training images, e.g. {missing[0]}")
    added = {name: 0 for name in aset.class_names}
    annotated = {name: 0 for name in aset.class_names}
    images, changed = [], 0
    for record in aset.images:
        if record.name not in train_names:
            images.append(record)
            continue
        for box in record.boxes:
            annotated[box.label] += 1
        extra = teacher_boxes(record, detections[record.name], aset.class_names, rule)
        for box in extra:
            added[box.label] += 1
        changed += bool(extra)
        images.append(replace(record, boxes=record.boxes + tuple(extra)) if extra else record)
    out = AnnotatedSet(
        images=images,
        class_names=aset.class_names,
        source=f"{aset.source} + pseudo-labels from {teacher}",
        format=aset.format,
    )
    report = PseudoLabelReport(
        teacher=teacher,
        rule=rule,
        train_images=len(train_names),
        images_changed=changed,
        annotated=annotated,
        added=added,
    )
    return out, report
