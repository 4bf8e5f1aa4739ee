"""Batch stage: pack the tiles of several frames into one model batch (a GPU wants hundreds of tiles
per call; one frame may have only a few). A batch leaves when it is full or ``wait_ms`` after its
first frame arrived, so a slow line never waits long for a full batch. Frames are never split."""

from __future__ import annotations

import threading
import time

import numpy as np

from inspection.messages import Frame, TileBatch
from inspection.metrics import DaemonMetrics
from inspection.queues import END, BoundedQueue, Empty, EndOfStream
from inspection.stages.base import Stage


def combine(batches: list[TileBatch]) -> TileBatch:
    frames: list[Frame] = []
    index: list[np.ndarray] = []
    tiles: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    for batch in batches:
        base = len(frames)
        frames.extend(batch.frames)
        index.append(batch.frame_index + base)
        tiles.append(batch.tiles)
        offsets.append(batch.offsets_xy)
    return TileBatch(
        tiles=np.concatenate(tiles),
        frames=tuple(frames),
        frame_index=np.concatenate(index),
        offsets_xy=np.concatenate(offsets),
    )


class BatchStage(Stage[TileBatch]):
    accepts = (TileBatch,)

    outbox: BoundedQueue  # the detect stage's inbox: never None

    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: BoundedQueue,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        max_tiles: int,
        wait_ms: float,
    ) -> None:
        super().__init__("batch", inbox, outbox, abort=abort, metrics=metrics)
        self.max_tiles = max_tiles
        self.wait_s = wait_ms / 1000.0
        self.pending: list[TileBatch] = []
        self.pending_tiles = 0
        self.first_at = 0.0

    def _release(self) -> None:
        if self.pending:
            self.emit([combine(self.pending)])
            self.pending, self.pending_tiles = [], 0

    def run(self) -> None:
        while not self.abort.is_set():
            self.heartbeat = time.monotonic()
            timeout = 0.2
            if self.pending:
                timeout = max(0.0, self.first_at + self.wait_s - time.monotonic())
            try:
                msg = self.inbox.get(timeout=timeout)
            except Empty:
                self._release()
                continue
            if isinstance(msg, EndOfStream):
                self._release()
                self.outbox.put(END)
                return
            if not isinstance(msg, TileBatch):
                self._release()  # keep failures and gaps in order with the frames around them
                self.emit([msg])
                continue
            if self.pending and self.pending_tiles + len(msg) > self.max_tiles:
                self._release()
            if not self.pending:
                self.first_at = time.monotonic()
            self.pending.append(msg)
            self.pending_tiles += len(msg)
            if self.pending_tiles >= self.max_tiles or self.wait_s == 0:
                self._release()
