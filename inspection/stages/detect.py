"""Detect stage: score a batch of tiles with the current model and hand each frame's per-tile
detections on. The model can be swapped between batches (hot reload) without losing a frame.

With ``detector.workers`` above 1, that many batches are scored at once by one model (ONNX Runtime and
torch sessions take concurrent calls), each call with fewer intra-op threads; batches still leave in
order. On a CPU-bound machine a core taken by another stage then slows one call, instead of stalling
both halves of a call split over two threads at every layer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from inspection.detector import TileDetector
from inspection.messages import FailedFrame, Message, TileBatch
from inspection.metrics import DaemonMetrics
from inspection.queues import BoundedQueue
from inspection.results import TileDetections
from inspection.stages.base import Stage
from inspection.stages.ordered_pool import OrderedPoolStage, timed

log = logging.getLogger("steel.pipeline")


class DetectStage(OrderedPoolStage[TileBatch]):
    accepts = (TileBatch,)

    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: BoundedQueue,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        detector: TileDetector,
        workers: int = 1,
    ) -> None:
        super().__init__("detect", inbox, outbox, abort=abort, metrics=metrics)
        self.detector = detector
        self.workers = max(1, workers)

    def run(self) -> None:
        if self.workers == 1:  # one call at a time: the stage's own thread, no pool to hop through
            Stage.run(self)
        else:
            super().run()

    def prepare(self, msg: TileBatch) -> Callable[[], list[Message]]:
        def score() -> list[Message]:
            try:
                return list(self.handle(msg))
            except Exception as exc:  # one bad batch must not stop the line
                log.exception("stage detect failed on a batch of %d frames", len(msg.frames))
                return self._failed(msg, exc)

        return lambda: timed(self, score)

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

    def _failed(self, msg: Message, exc: BaseException) -> list[Message]:
        frames = msg.frames if isinstance(msg, TileBatch) else ()
        return [
            FailedFrame(f.source, f.seq, f.captured_at, reason=f"detect: {type(exc).__name__}: {exc}")
            for f in frames
        ]
