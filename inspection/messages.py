"""Typed messages passed between the daemon's stages (never bare tuples or dicts).

source -> :class:`Frame` / :class:`FailedFrame` / :class:`SourceGap` -> preprocess -> tile ->
:class:`TileBatch` -> detect -> :class:`FrameDetections` -> merge, track, sinks.

Messages are frozen; a :class:`Frame`'s pixels are made read-only on construction so no stage can
change what another stage (or the annotated copy written for the dashboard) sees. A stage that
transforms pixels builds a new frame with :meth:`Frame.with_image`. Timestamps are timezone-aware
(UTC by convention) because they end up in a database shared across sites.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

import numpy as np

from datasets.detections import Detections

Surface: TypeAlias = Literal["top", "bottom"]
SURFACES: tuple[Surface, ...] = ("top", "bottom")
"""The strip surfaces a camera can see; a frame says which one when its source knows."""


def _check_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _check_image(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(
            f"{what}: image must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}"
        )
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or image.size == 0:
        raise ValueError(f"{what}: image must be (H, W) or (H, W, 3) and non-empty, got shape {image.shape}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One image to inspect.

    Attributes:
        source: the source's stable name (with ``seq`` the frame's idempotent key in the database).
        seq: sequence number, unique and stable within ``source`` (see each source for how it is made).
        image: ``(H, W)`` uint8 grayscale or ``(H, W, 3)`` uint8 BGR; made read-only.
        captured_at: when the frame's last line / the image was captured (timezone-aware).
        start_line: line-scan only: encoder count of the frame's first row (row ``r`` is line
            ``start_line + r``); ``None`` for area cameras, videos and folders.
        line_id: the production line the source belongs to (may be empty).
        coil: the coil (or run) being inspected, when known.
        meta: source-specific extras (file path, video position, gap flags); treat as read-only.
        surface: which strip surface the frame shows (``top``/``bottom``), when the source says.
    """

    source: str
    seq: int
    image: np.ndarray
    captured_at: datetime
    start_line: int | None = None
    line_id: str = ""
    coil: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    surface: Surface | None = None

    def __post_init__(self) -> None:
        _check_image(self.image, f"Frame {self.source}#{self.seq}")
        _check_aware("Frame.captured_at", self.captured_at)
        if self.surface is not None and self.surface not in SURFACES:
            raise ValueError(
                f"Frame {self.source}#{self.seq}: surface {self.surface!r} is not one of {SURFACES}"
            )
        self.image.setflags(write=False)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def end_line(self) -> int | None:
        """Encoder count one past the frame's last row (``start_line + height``), line-scan only."""
        return None if self.start_line is None else self.start_line + self.height

    def with_image(self, image: np.ndarray, **meta: Any) -> Frame:
        """The same frame with new pixels (e.g. after preprocessing) and ``meta`` entries added.

        A resize changes what a pixel means: the caller records the scale in ``meta`` so boxes can be
        mapped back to source pixels.
        """
        return dataclasses.replace(self, image=image, meta={**self.meta, **meta})


@dataclass(frozen=True, slots=True)
class FailedFrame:
    """An input that could not become a :class:`Frame` (corrupt, truncated, empty, wrong size).

    Recorded as a failed frame with its reason and counted; it never raises out of a source.
    """

    source: str
    seq: int
    captured_at: datetime
    reason: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_aware("FailedFrame.captured_at", self.captured_at)


@dataclass(frozen=True, slots=True)
class SourceGap:
    """A stretch of time (and, for line-scan sources, of encoder lines) with no input.

    Emitted when a camera or stream reconnects after a disconnect, when a source gives up, and when
    a line-scan encoder count jumps (missing lines are reported, never stitched over).

    Attributes:
        first_missing_line / missing_lines: line-scan only: the first encoder count not received and
            how many were skipped (negative when the count went backwards).
    """

    source: str
    started_at: datetime
    ended_at: datetime
    reason: str
    first_missing_line: int | None = None
    missing_lines: int | None = None

    def __post_init__(self) -> None:
        _check_aware("SourceGap.started_at", self.started_at)
        _check_aware("SourceGap.ended_at", self.ended_at)

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()


SourceEvent: TypeAlias = Frame | FailedFrame | SourceGap
"""What a source yields."""


@dataclass(frozen=True, slots=True)
class TileBatch:
    """Tiles from one or more frames, scored as one model batch.

    Attributes:
        tiles: ``(N, th, tw)`` or ``(N, th, tw, 3)`` uint8.
        frames: the frames the tiles were cut from.
        frame_index: ``(N,)`` int64, which entry of ``frames`` each tile belongs to.
        offsets_xy: ``(N, 2)`` int64, each tile's top-left corner ``(x, y)`` in its frame.
    """

    tiles: np.ndarray
    frames: tuple[Frame, ...]
    frame_index: np.ndarray
    offsets_xy: np.ndarray

    def __post_init__(self) -> None:
        tiles = np.asarray(self.tiles)
        index = np.asarray(self.frame_index, dtype=np.int64).reshape(-1)
        offsets = np.asarray(self.offsets_xy, dtype=np.int64).reshape(-1, 2)
        if tiles.ndim not in (3, 4) or tiles.dtype != np.uint8:
            raise ValueError(
                f"TileBatch: tiles must be uint8 (N, th, tw[, C]), got {tiles.dtype} {tiles.shape}"
            )
        if not (len(tiles) == len(index) == len(offsets)):
            raise ValueError(
                f"TileBatch: {len(tiles)} tiles, {len(index)} frame indices, {len(offsets)} offsets"
            )
        if len(index) and (index.min() < 0 or index.max() >= len(self.frames)):
            raise ValueError(f"TileBatch: frame_index outside 0..{len(self.frames) - 1}")
        for name, value in (("tiles", tiles), ("frame_index", index), ("offsets_xy", offsets)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "frames", tuple(self.frames))

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def tile_hw(self) -> tuple[int, int]:
        return int(self.tiles.shape[1]), int(self.tiles.shape[2])

    def tiles_of(self, i: int) -> np.ndarray:
        """Indices (into this batch) of the tiles of ``frames[i]``, in batch order."""
        return np.flatnonzero(self.frame_index == i)


@dataclass(frozen=True, slots=True)
class FrameDetections:
    """A frame's detections after merging its tiles.

    Attributes:
        detections: boxes in the pixels of ``frame.image`` (add ``frame.start_line`` to ``y`` for
            strip coordinates).
        model_version: the bundle that produced them (hot swaps change it between frames).
        latency_ms: capture -> detections, or the stage time, as the pipeline documents.
    """

    frame: Frame
    detections: Detections
    model_version: str
    latency_ms: float


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
class FrameEvidence:
    """The evidence files written for one frame (by the evidence stage, before the sink stores its row):
    the annotated frame, each new defect's crop by track id, and why any of them is missing."""

    image_path: str | None
    crop_paths: tuple[tuple[str, str | None], ...] = ()  # (track id, crop path or None)
    problem: str | None = None  # "evidence not saved: ..." when a file could not be written
    map_paths: tuple[tuple[str, str], ...] = ()  # (track id, heat-map crop) for ``anomaly`` defects

    def crop_of(self, track_id: str) -> str | None:
        return dict(self.crop_paths).get(track_id)

    def map_of(self, track_id: str) -> str | None:
        return dict(self.map_paths).get(track_id)


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
    evidence: FrameEvidence | None = None  # None: not written yet (the sink writes it itself)


Message: TypeAlias = SourceEvent | TileBatch | TileDetections | FrameDetections | FrameResult
"""Everything that travels between two stages (besides the queue's end-of-stream marker)."""
