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
