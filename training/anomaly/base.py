"""The contract every anomaly model keeps: uint8 tiles in, per-pixel anomaly maps out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

MAP_BLUR_SIGMA_PX = 4.0  # smooths patch-level noise; about half the feature stride at NEU scale


class AnomalyScorer(Protocol):
    kind: str

    def maps(self, tiles: Sequence[np.ndarray]) -> list[np.ndarray]:
        """float32 (H, W) anomaly map per uint8 (H, W) tile, in the tile's own pixels."""
        ...


def to_gray(tile: np.ndarray) -> np.ndarray:
    if tile.ndim == 3:
        return cv2.cvtColor(tile, cv2.COLOR_BGR2GRAY) if tile.shape[2] == 3 else tile[..., 0]
    return tile


def finish_map(low_res: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Upsample a (h, w) map to the tile's (H, W) and blur it: float32 (H, W)."""
    full = cv2.resize(low_res.astype(np.float32), (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(full, (0, 0), MAP_BLUR_SIGMA_PX)


def tile_score(anomaly_map: np.ndarray, border_px: int = 4) -> float:
    """A tile's score: the highest value of its map, a few border pixels left out (padding effects)."""
    h, w = anomaly_map.shape
    inner = anomaly_map[border_px : h - border_px, border_px : w - border_px]
    return float(inner.max() if inner.size else anomaly_map.max())


def box_evidence(xyxy: np.ndarray, anomaly_map: np.ndarray) -> np.ndarray:
    """The highest value of ``anomaly_map`` inside each ``(N, 4)`` box (at least one pixel each): how
    unusual the steel under a detection looks, in the map's units."""
    h, w = anomaly_map.shape
    out = np.zeros(len(xyxy), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(xyxy, np.float32).reshape(-1, 4)):
        xa, ya = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
        xb, yb = max(xa + 1, int(np.ceil(min(x2, w)))), max(ya + 1, int(np.ceil(min(y2, h))))
        out[k] = float(anomaly_map[ya:yb, xa:xb].max())
    return out
