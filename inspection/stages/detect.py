"""Detect stage: score a batch of tiles with the current model and hand each frame's per-tile
detections on. The model can be swapped between batches (hot reload) without losing a frame."""

from __future__ import annotations

import time
from collections.abc import Iterable

from inspection.detector import TileDetector
from inspection.messages import FailedFrame, TileBatch
from inspection.results import TileDetections
from inspection.stages.base import Stage


class DetectStage(Stage[TileBatch]):
    accepts = (TileBatch,)

    def __init__(self, *args, detector: TileDetector, **kwargs):
        super().__init__("detect", *args, **kwargs)
        self.detector = detector

    def handle(self, msg: TileBatch) -> Iterable[TileDetections]:
        started = time.perf_counter()
        per_tile, version = self.detector.detect(msg.tiles)
        detect_ms = (time.perf_counter() - started) * 1000.0
        out = []
        for i, frame in enumerate(msg.frames):
            idx = msg.tiles_of(i)
            grid = tuple((int(x), int(y)) for x, y in msg.offsets_xy[idx])
            share = detect_ms * len(idx) / max(1, len(msg))
            out.append(
                TileDetections(
                    frame=frame,
                    per_tile=tuple(per_tile[j] for j in idx),
                    grid=grid,
                    tile_hw=msg.tile_hw,
                    model_version=version,
                    detect_ms=share,
                )
            )
        return out

    def _failed(self, msg, exc):
        return [
            FailedFrame(f.source, f.seq, f.captured_at, reason=f"detect: {type(exc).__name__}: {exc}")
            for f in msg.frames
        ]
