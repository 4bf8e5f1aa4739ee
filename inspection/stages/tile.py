"""Tile stage: cut each frame into model-sized tiles (with overlap, last tile snapped to the edge)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

from inspection.messages import Frame, TileBatch
from inspection.metrics import DaemonMetrics
from inspection.queues import BoundedQueue
from inspection.stages.base import Stage
from inspection.tiling import cut_tiles, tile_grid


class TileStage(Stage[Frame]):
    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: BoundedQueue,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        tile_hw: tuple[int, int],
        overlap_hw: tuple[int, int],
    ) -> None:
        super().__init__("tile", inbox, outbox, abort=abort, metrics=metrics)
        self.tile_hw = tile_hw
        self.overlap_hw = overlap_hw

    def handle(self, msg: Frame) -> Iterable[TileBatch]:
        grid = tile_grid((msg.height, msg.width), self.tile_hw, self.overlap_hw)
        tiles = cut_tiles(msg.image, grid, self.tile_hw)
        return [
            TileBatch(
                tiles=tiles,
                frames=(msg,),
                frame_index=np.zeros(len(grid), np.int64),
                offsets_xy=np.asarray(grid, np.int64).reshape(-1, 2),
            )
        ]
