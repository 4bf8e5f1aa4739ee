"""Strays on clean steel seen in context: detections on whole validation frames whose centre lies in the
frame's clean region (every pixel at least ``margin_px`` from each annotated box).

The clean-tile figure (``training.background``) scores mirrored canvases of small crops; the mirror
repeats an edge mark as a symmetric shape and the detector sees a texture a line never shows. Here the
detector sees the real frame, as the daemon would, and the count is normalised by clean area, in tiles
of ``tile_px`` squared, so the two figures are in the same unit (strays per 100 tiles of clean steel).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from datasets.background import forbidden_mask, source_class
from datasets.detections import Detections
from datasets.model import ImageRecord


@dataclass(frozen=True, slots=True)
class CleanContextStrays:
    """Strays centred on clean steel and the clean area they were found on, per source class."""

    strays: Counter[str] = field(default_factory=Counter)
    tile_areas: dict[str, float] = field(default_factory=dict)  # clean pixels / tile_px**2

    def per_100(self, source: str | None = None) -> float:
        """Strays per 100 tiles of clean steel, overall or for frames filed under ``source``."""
        strays = sum(self.strays.values()) if source is None else self.strays[source]
        area = sum(self.tile_areas.values()) if source is None else self.tile_areas.get(source, 0.0)
        return 100.0 * strays / area if area > 0 else float("nan")


def clean_context_strays(
    records: Sequence[ImageRecord],
    detections: Sequence[Detections],
    thresholds: np.ndarray,
    margin_px: int = 12,
    tile_px: int = 200,
) -> CleanContextStrays:
    """Count each detection at ``score >= thresholds[class_id]`` whose box centre lies on clean steel.

    ``records`` carry the annotated boxes (their images' sizes are the frames'); ``detections`` are the
    detector's on the same frames, in order. A frame without a clean pixel adds nothing.
    """
    if len(records) != len(detections):
        raise ValueError(f"{len(records)} records but {len(detections)} detection sets")
    limits = np.asarray(thresholds, dtype=np.float32)
    strays: Counter[str] = Counter()
    areas: dict[str, float] = {}
    for record, dets in zip(records, detections, strict=True):
        clean = ~forbidden_mask(record, margin_px)
        source = source_class(record)
        areas[source] = areas.get(source, 0.0) + float(clean.sum()) / float(tile_px * tile_px)
        kept = dets.xyxy[dets.scores >= limits[dets.class_ids]]
        if len(kept) == 0:
            continue
        cx = np.clip(((kept[:, 0] + kept[:, 2]) / 2).astype(int), 0, record.width - 1)
        cy = np.clip(((kept[:, 1] + kept[:, 3]) / 2).astype(int), 0, record.height - 1)
        strays[source] += int(clean[cy, cx].sum())
    return CleanContextStrays(strays, areas)
