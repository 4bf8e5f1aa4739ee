"""The evidence of an ``anomaly`` defect: the anomaly map over the frame, and its heat-map crop on disk.

The anomaly stage stitches its tile maps into one frame map (the maximum where tiles overlap) when a frame
holds an unexplained region, scaled to uint8 so that the calibrated threshold is always the same value
(:data:`THRESHOLD_LEVEL`): a reviewer reads every heat-map against one colour scale. The map rides in the
frame's ``meta`` (under :data:`MAP_META_KEY`) to the evidence writer, which crops it with the defect crop's
window and writes it beside the crop (``<crop>.map.png``); the path is stored in ``defects.map_path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inspection.messages import Frame

ANOMALY_CLASS = "anomaly"  # the class name of a region the anomaly model flags and no detection explains
MAP_META_KEY = "anomaly_map_u8"
THRESHOLD_LEVEL = 128  # the threshold's value in the uint8 map: above it (warm colours) is anomalous
HEAT_BLEND = 0.6  # share of the colour map over the grey pixels in the written crop


def frame_map(
    maps: Sequence[np.ndarray], grid: Sequence[tuple[int, int]], frame_hw: tuple[int, int]
) -> np.ndarray:
    """Tile maps (tile pixels, corners ``grid``) -> one float32 (H, W) map of the frame (max on overlaps)."""
    h, w = frame_hw
    out = np.zeros((h, w), np.float32)
    for (x0, y0), amap in zip(grid, maps, strict=True):
        th, tw = min(amap.shape[0], h - y0), min(amap.shape[1], w - x0)  # tiles past a small frame: padding
        if th <= 0 or tw <= 0:
            continue
        view = out[y0 : y0 + th, x0 : x0 + tw]
        np.maximum(view, amap[:th, :tw], out=view)
    return out


def frame_map_u8(full: np.ndarray, threshold: float) -> np.ndarray:
    """A frame's float map (``frame_map``) as uint8, the threshold at :data:`THRESHOLD_LEVEL`."""
    return np.clip(full * (THRESHOLD_LEVEL / threshold), 0, 255).astype(np.uint8)


def heat_map_crop(frame: Frame, window: tuple[int, int, int, int]) -> np.ndarray | None:
    """The frame's anomaly map in ``window`` as a BGR heat-map laid over the grey pixels; None when the
    frame carries no map (no anomaly model, or no unexplained region in it)."""
    amap = frame.meta.get(MAP_META_KEY)
    if not isinstance(amap, np.ndarray) or amap.shape[:2] != frame.image.shape[:2]:
        return None
    xa, ya, xb, yb = window
    heat = cv2.applyColorMap(np.ascontiguousarray(amap[ya:yb, xa:xb]), cv2.COLORMAP_JET)
    pixels = frame.image[ya:yb, xa:xb]
    grey = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) if pixels.ndim == 2 else pixels
    return cv2.addWeighted(heat, HEAT_BLEND, grey, 1.0 - HEAT_BLEND, 0.0)


def map_crop_path(crop: str | Path) -> Path:
    """Where the heat-map crop of a defect goes: beside its crop, ``<seq>_<track>.map.png``."""
    crop = Path(crop)
    return crop.with_name(f"{crop.stem}.map.png")
