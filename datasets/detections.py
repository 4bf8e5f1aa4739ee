"""The one detection value type spoken by the model adapters, the daemon's stages, trackers and sinks.

numpy only (no torch), so the dashboard and storage can use it too. Immutable: every operation
returns a new object; stages never mutate detections in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Detections:
    """``N`` detections: ``xyxy`` float32 (N,4) 0-based pixels, ``scores`` float32 (N,),
    ``class_ids`` int64 (N,)."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if not (len(xyxy) == len(scores) == len(class_ids)):
            raise ValueError(
                f"Detections: {len(xyxy)} boxes, {len(scores)} scores, {len(class_ids)} class ids"
            )
        for name, value in (("xyxy", xyxy), ("scores", scores), ("class_ids", class_ids)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        """Boolean mask or index array selection."""
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index])

    def shifted(self, dx: float, dy: float) -> Detections:
        """The same boxes moved by ``(dx, dy)`` pixels (tile -> frame, frame -> strip coordinates)."""
        offset = np.array([dx, dy, dx, dy], dtype=np.float32)
        return Detections(self.xyxy + offset, self.scores, self.class_ids)

    def scaled(self, sx: float, sy: float) -> Detections:
        factor = np.array([sx, sy, sx, sy], dtype=np.float32)
        return Detections(self.xyxy * factor, self.scores, self.class_ids)

    def above(self, threshold: float) -> Detections:
        return self[self.scores >= threshold]
