"""A stage whose work runs in a small pool of threads while its messages leave in the order they came.

Two stages need it: evidence (encoding images at a lower OS priority) and detect (several model calls in
flight, so a core taken by another stage stalls one call instead of both halves of a two-thread call).
Downstream stages rely on order: tracking matches a frame against the one before it, the sink's coverage
and coil bookkeeping follow the frame sequence.

At end of stream every message in flight is finished and handed on before the marker; on abort, work not
yet started is dropped (its frames were never stored, so they are read again on restart).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from inspection.messages import Message
from inspection.queues import END, Empty, EndOfStream
from inspection.stages.base import Stage

InT = TypeVar("InT", bound=Message)


class OrderedPoolStage(Stage[InT]):
    """Subclasses implement :meth:`prepare` (runs in order on the stage's thread and returns the work for
    a pool thread); the pool has ``workers`` threads, each set up by :meth:`init_worker`."""

    workers: int = 1

    def prepare(self, msg: InT) -> Callable[[], list[Message]]:
        raise NotImplementedError

    def init_worker(self) -> None:
        """Runs once in each pool thread before its first task (e.g. to lower its priority)."""

    def _pass_on(self, pending: deque[Future[list[Message]]], *, keep: int) -> bool:
        """Hand on finished work in order until at most ``keep`` remain (waiting for the oldest when more
        remain); False when the daemon aborted while waiting or while the next queue was full."""
        while pending and (len(pending) > keep or pending[0].done()):
            while not pending[0].done():
                if self.abort.is_set():
                    return False
                wait([pending[0]], timeout=0.2)
            for item in pending[0].result():
                if self.outbox is not None and not self.outbox.put(item, abort=self.abort):
                    return False
            pending.popleft()
            self.handled += 1
        return True

    def _submit(self, pool: ThreadPoolExecutor, pending: deque[Future[list[Message]]], msg: Message) -> None:
        if self._accepts(msg):
            pending.append(pool.submit(self.prepare(msg)))
        else:  # failures and gaps keep their place among the frames
            done: Future[list[Message]] = Future()
            done.set_result([msg])
            pending.append(done)

    def run(self) -> None:
        pool = ThreadPoolExecutor(
            self.workers, thread_name_prefix=self.stage_name, initializer=self.init_worker
        )
        pending: deque[Future[list[Message]]] = deque()
        try:
            while not self.abort.is_set():
                self.heartbeat = time.monotonic()
                if not self._pass_on(pending, keep=2 * self.workers):
                    return
                try:
                    msg = self.inbox.get(timeout=0.05 if pending else 0.2)
                except Empty:
                    continue
                if isinstance(msg, EndOfStream):
                    if self._pass_on(pending, keep=0) and self.outbox is not None:
                        self.outbox.put(END)
                    return
                self._submit(pool, pending, msg)
        finally:
            aborted = self.abort.is_set()
            pool.shutdown(wait=not aborted, cancel_futures=aborted)


def timed(stage: Stage, work: Callable[[], list[Message]]) -> list[Message]:
    """Run ``work`` and observe its seconds under the stage's name (the pool's share of the metric)."""
    started = time.perf_counter()
    out = work()
    if stage.metrics is not None:
        stage.metrics.observe_stage_seconds(stage.stage_name, time.perf_counter() - started)
    return out
