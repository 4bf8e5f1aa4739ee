"""The thread every stage runs in: take a message, handle it, pass results on; forward failures and
gaps untouched; flush and forward the end-of-stream marker; beat a heartbeat the watchdog reads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Generic, TypeGuard, TypeVar

from inspection.messages import FailedFrame, Frame, Message
from inspection.metrics import DaemonMetrics
from inspection.queues import END, BoundedQueue, Empty, EndOfStream

log = logging.getLogger("steel.pipeline")

#: the message type a stage handles (what its ``accepts`` names at run time)
InT = TypeVar("InT", bound=Message)


class Stage(threading.Thread, Generic[InT]):
    """Subclasses implement :meth:`handle` (and optionally :meth:`flush`); ``Stage[Frame]`` handles frames."""

    #: message types the stage works on; everything else passes through unchanged
    accepts: tuple[type, ...] = (Frame,)

    def __init__(
        self,
        name: str,
        inbox: BoundedQueue,
        outbox: BoundedQueue | None,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
    ) -> None:
        super().__init__(name=f"stage-{name}", daemon=True)
        self.stage_name = name
        self.inbox = inbox
        self.outbox = outbox
        self.abort = abort
        self.metrics = metrics
        self.heartbeat = time.monotonic()
        self.error: BaseException | None = None
        self.handled = 0

    def handle(self, msg: InT) -> Iterable[Message]:
        raise NotImplementedError

    def _accepts(self, msg: object) -> TypeGuard[InT]:
        """Whether ``msg`` is one of :attr:`accepts` (the run-time spelling of ``InT``)."""
        return isinstance(msg, self.accepts)

    def flush(self) -> Iterable[Message]:
        return ()

    def emit(self, items: Iterable[Message]) -> None:
        if self.outbox is None:
            return
        for item in items:
            self.outbox.put(item, abort=self.abort)

    def _failed(self, msg: Message, exc: BaseException) -> list[Message]:
        """A frame that broke this stage becomes a failed frame with the reason; the daemon goes on."""
        frame = getattr(msg, "frame", msg)
        if isinstance(frame, Frame):
            return [
                FailedFrame(
                    frame.source,
                    frame.seq,
                    frame.captured_at,
                    reason=f"{self.stage_name}: {type(exc).__name__}: {exc}",
                )
            ]
        return []

    def run(self) -> None:
        while not self.abort.is_set():
            self.heartbeat = time.monotonic()
            try:
                msg = self.inbox.get(timeout=0.2)
            except Empty:
                continue
            if isinstance(msg, EndOfStream):
                try:
                    self.emit(self.flush())
                finally:
                    if self.outbox is not None:
                        self.outbox.put(END)
                return
            if not self._accepts(msg):
                self.emit([msg])
                continue
            started = time.perf_counter()
            try:
                out = list(self.handle(msg))
            except Exception as exc:  # one bad frame must not stop the line
                log.exception("stage %s failed on %r", self.stage_name, getattr(msg, "seq", msg))
                out = self._failed(msg, exc)
            if self.metrics is not None:
                self.metrics.observe_stage_seconds(self.stage_name, time.perf_counter() - started)
            self.handled += 1
            self.emit(out)
