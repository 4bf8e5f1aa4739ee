"""Shapes and defaults of the inspection daemon, in one place.

Every stage imports its defaults from here instead of repeating literals (Frigate hard-coded one tensor
shape in three places; we do not). Units are in the names: ``_px``, ``_lines``, ``_s``, ``_mm``.
"""

from __future__ import annotations

from typing import Literal

# --- tiling: the model learned on 200x200 NEU-DET images, so frames are cut into tiles of that size.
DEFAULT_TILE_HW: tuple[int, int] = (200, 200)
# Overlap between neighbouring tiles. A defect cut by a tile border is seen partly in both tiles; the
# overlap makes the two partial boxes intersect, which is what lets the merger join them into one.
DEFAULT_TILE_OVERLAP_HW: tuple[int, int] = (40, 40)
# IoU above which two boxes of one class are the same detection (class-wise NMS / box fusion).
DEFAULT_MERGE_IOU: float = 0.5
# A box edge within this many pixels of an interior tile edge counts as "cut by the border".
DEFAULT_BORDER_EDGE_PX: float = 2.0
# How the bottom/right of a frame smaller than one tile is padded ("reflect", "edge" or "constant").
DEFAULT_TILE_PAD_MODE: Literal["reflect", "edge", "constant"] = "reflect"

# --- line-scan frames: H lines per frame, consecutive frames overlapping by O lines.
DEFAULT_FRAME_LINES: int = 600
DEFAULT_FRAME_OVERLAP_LINES: int = 100
# Lines per block a (simulated) frame grabber hands over at once.
DEFAULT_BLOCK_LINES: int = 100
# Strip length per encoder pulse (one line): position_m = line * mm_per_line / 1000.
DEFAULT_MM_PER_LINE: float = 0.5

# --- strip simulator: NEU-DET images placed in a grid, several across the web and many along it.
NEU_IMAGE_HW: tuple[int, int] = (200, 200)
DEFAULT_SIM_ACROSS: int = 4
DEFAULT_SIM_ALONG: int = 30
DEFAULT_SPLIT_FILE: str = "configs/splits/neu-det-dev.json"  # relative to the repository root

# --- sources
FOLDER_POLL_S: float = 1.0  # how often a following folder source looks for new files
SEQ_BITS: int = 63  # frame sequence numbers fit a signed 64-bit database column
# Reconnecting a video stream or camera: exponential backoff from INITIAL to MAX, doubling each try.
RECONNECT_INITIAL_BACKOFF_S: float = 0.5
RECONNECT_MAX_BACKOFF_S: float = 30.0
RECONNECT_BACKOFF_FACTOR: float = 2.0
RECONNECT_MAX_ATTEMPTS: int | None = 10  # consecutive failed attempts before a source gives up; None = never
GENICAM_FETCH_TIMEOUT_S: float = 5.0
