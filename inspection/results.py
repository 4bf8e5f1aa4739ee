"""Messages of the daemon's back half (after the model): per-tile detections of a frame and the
tracked result the sinks store. The front half's messages are in :mod:`inspection.messages`."""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets.detections import Detections
from inspection.messages import Frame


@dataclass(frozen=True, slots=True)
class TileDetections:
    """One frame's detections per tile, in tile pixels, aligned with ``grid`` (tile corners (x, y))."""

    frame: Frame
    per_tile: tuple[Detections, ...]
    grid: tuple[tuple[int, int], ...]
    tile_hw: tuple[int, int]
    model_version: str
    detect_ms: float


@dataclass(frozen=True, slots=True)
class TrackedDefect:
    """A defect after tracking. ``strip_xyxy`` is ``None`` for sources without encoder positions."""

    class_id: int
    class_name: str
    score: float
    xyxy: tuple[float, float, float, float]  # frame pixels
    strip_xyxy: tuple[float, float, float, float] | None
    track_id: str
    first_frame_seq: int
    dhash: int


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What the sinks get for one frame: defects seen for the first time (stored with this frame) and
    tracks seen again (already stored; their ``last_frame_seq`` moves to this frame)."""

    frame: Frame
    detections: Detections  # every merged detection of the frame (for the annotated copy)
    new_defects: tuple[TrackedDefect, ...]
    seen_again: tuple[str, ...] = field(default_factory=tuple)  # track ids
    model_version: str = ""
    detect_ms: float = 0.0
