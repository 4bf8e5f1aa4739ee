"""A false-alarm budget per 100 m of strip, turned into the per-1,000-tiles budget calibration works in.

The daemon scores tiles; a plant counts false alarms per length of strip. How many tiles cover 100 m
follows from the frame geometry in the inspection config: along the strip a tile row advances
``tile_h - overlap_h`` encoder lines of ``mm_per_line`` mm each; across it the frame's width is cut into
as many tiles as the daemon cuts (the line's own clean frames give the width in pixels, ``mm_per_px``
its width in mm). Frames overlapping along the strip are not counted twice: the tracker stores a defect
seen in two frames once, so an alarm is per strip area, not per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inspection.tiling import tile_offsets

STRIP_MM = 100_000.0  # 100 m


@dataclass(frozen=True, slots=True)
class StripGeometry:
    mm_per_line: float
    mm_per_px: float
    frame_width_px: int
    tile_hw: tuple[int, int]
    overlap_hw: tuple[int, int]

    def __post_init__(self) -> None:
        if self.tile_hw[0] - self.overlap_hw[0] <= 0:
            raise ValueError(f"tiling: overlap {self.overlap_hw[0]} must be below the tile height")
        if self.frame_width_px <= 0:
            raise ValueError(f"frame width {self.frame_width_px} px is not > 0")

    @property
    def tiles_across(self) -> int:
        return len(tile_offsets(self.frame_width_px, self.tile_hw[1], self.overlap_hw[1]))

    @property
    def tiles_per_100m(self) -> float:
        """Tiles covering 100 m of strip: tile rows along (at the tiling's stride) times tiles across."""
        row_mm = (self.tile_hw[0] - self.overlap_hw[0]) * self.mm_per_line
        return STRIP_MM / row_mm * self.tiles_across

    def per_1000_tiles(self, per_100m: float) -> float:
        """The per-1,000-tiles budget that puts at most ``per_100m`` false alarms on 100 m of strip."""
        if per_100m < 0:
            raise ValueError(f"--budget-per-100m: {per_100m} is not >= 0")
        return per_100m * 1000.0 / self.tiles_per_100m

    def per_100m(self, per_1000_tiles: float) -> float:
        return per_1000_tiles * self.tiles_per_100m / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mm_per_line": self.mm_per_line,
            "mm_per_px": self.mm_per_px,
            "frame_width_px": self.frame_width_px,
            "strip_width_mm": round(self.frame_width_px * self.mm_per_px, 1),
            "tile_hw": list(self.tile_hw),
            "overlap_hw": list(self.overlap_hw),
            "tiles_across": self.tiles_across,
            "tiles_per_100m": round(self.tiles_per_100m, 1),
        }
