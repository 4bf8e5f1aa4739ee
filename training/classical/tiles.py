"""Defect and clean tiles cut from annotated images by a simple geometric rule.

A stand-in for the clean-steel work's ``steel data background`` tiles (another branch): a tile is
*clean* when it stays at least ``margin_px`` away from every box, *defect* when boxes cover at least
``min_defect_cover`` of it; tiles in between are ambiguous and left out. Tiles are cut at their native
size on a grid (last row/column snapped to the image edge), never up-scaled, so an image smaller than a
tile gives none.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import Field

from datasets.model import Box
from datasets.settings import StrictModel

CLEAN = "clean"
DEFECT = "defect"
TILE_CLASSES: tuple[str, ...] = (CLEAN, DEFECT)


class TileRule(StrictModel):
    tile_px: int = Field(64, ge=8, le=1024)
    stride_px: int = Field(32, ge=1, le=1024)
    margin_px: int = Field(8, ge=0, le=256, description="clean tiles keep this far from every box")
    min_defect_cover: float = Field(0.5, gt=0, le=1, description="box-covered fraction of a defect tile")
    max_defect_per_image: int = Field(2, ge=0, description="defect tiles kept per image (evenly spread)")
    max_clean_per_image: int = Field(4, ge=0, description="clean tiles kept per image (evenly spread)")


@dataclass(frozen=True, slots=True)
class Tile:
    """A window ``x, y, x + size, y + size`` of an image and its label (``clean`` or ``defect``)."""

    x: int
    y: int
    size: int
    label: str


def grid_offsets(length_px: int, tile_px: int, stride_px: int) -> list[int]:
    """Tile starts along one axis; the last tile is snapped to end at the edge. Empty if the axis is short."""
    if length_px < tile_px:
        return []
    starts = list(range(0, length_px - tile_px + 1, stride_px))
    if starts[-1] != length_px - tile_px:
        starts.append(length_px - tile_px)
    return starts


def box_mask(boxes: tuple[Box, ...], width: int, height: int) -> np.ndarray:
    """Bool ``(H, W)``: pixels any box touches (boxes rounded outwards to whole pixels)."""
    mask = np.zeros((height, width), dtype=bool)
    for b in boxes:
        x1, y1 = max(0, int(np.floor(b.x1))), max(0, int(np.floor(b.y1)))
        x2, y2 = min(width, int(np.ceil(b.x2))), min(height, int(np.ceil(b.y2)))
        mask[y1:y2, x1:x2] = True
    return mask


def _spread(items: list[Tile], keep: int) -> list[Tile]:
    if len(items) <= keep:
        return items
    picks = np.linspace(0, len(items) - 1, keep).round().astype(int)
    return [items[i] for i in picks]


def cut_tiles(boxes: tuple[Box, ...], width: int, height: int, rule: TileRule) -> list[Tile]:
    """Up to ``rule.max_clean_per_image`` clean and ``rule.max_defect_per_image`` defect tiles, each kind
    evenly spread over the grid's row-major order (so a few images cannot dominate either class)."""
    mask = box_mask(boxes, width, height)
    grown = mask
    if rule.margin_px:  # a tile is clean when no box pixel lies within margin_px of it
        k = 2 * rule.margin_px + 1
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    clean: list[Tile] = []
    defect: list[Tile] = []
    t = rule.tile_px
    for y in grid_offsets(height, t, rule.stride_px):
        for x in grid_offsets(width, t, rule.stride_px):
            if not grown[y : y + t, x : x + t].any():
                clean.append(Tile(x, y, t, CLEAN))
            elif mask[y : y + t, x : x + t].mean() >= rule.min_defect_cover:
                defect.append(Tile(x, y, t, DEFECT))
    return _spread(clean, rule.max_clean_per_image) + _spread(defect, rule.max_defect_per_image)
