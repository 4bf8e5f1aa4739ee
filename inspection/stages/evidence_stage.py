"""Evidence stage: writes each frame's crops, annotated and raw frame images before the sink stores its
row, so the sink's one thread only writes rows. Encoding runs in a small pool of worker threads at a
lower OS priority than the model (on a CPU-bound line the detector gets the cores first; evidence uses
what is left). Frames leave in the order they came: the sink's coverage and coil bookkeeping rely on it.

A file that cannot be written (full disk) is named in the frame's evidence (``problem``); the sink
stores the frame ``ok`` with ``frames.error = "evidence not saved: ..."``. At end of stream every frame
in flight is written and handed on before the marker; on abort, frames in flight are not stored and
are read again on restart like any frame a stage held.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait

from inspection.messages import FrameResult, Message
from inspection.metrics import DaemonMetrics
from inspection.queues import END, BoundedQueue, Empty, EndOfStream
from inspection.stages.base import Stage
from inspection.stages.evidence import EvidencePlan, EvidenceWriter

log = logging.getLogger("steel.evidence")


def lower_thread_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (Linux only: there a thread has its own nice
    value; elsewhere ``setpriority`` would slow the whole process, so nothing is done)."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # a sandbox may refuse it: evidence then shares the model's priority
        log.warning("evidence writers keep normal priority: %s", exc)


class EvidenceStage(Stage[FrameResult]):
    accepts = (FrameResult,)

    outbox: BoundedQueue  # the sink's inbox: never None

    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: BoundedQueue,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        writer: EvidenceWriter,
        workers: int,
        nice: int,
    ) -> None:
        super().__init__("evidence", inbox, outbox, abort=abort, metrics=metrics)
        self.writer = writer
        self.workers = max(1, workers)
        self.nice = nice
        self._pending: deque[Future[Message]] = deque()

    def _write(self, result: FrameResult, plan: EvidencePlan) -> Message:
        started = time.perf_counter()
        evidence = self.writer.write_safely(result, plan)
        if self.metrics is not None:
            self.metrics.observe_stage_seconds("evidence", time.perf_counter() - started)
        return dataclasses.replace(result, evidence=evidence)

    def _pass_on(self, *, keep: int) -> bool:
        """Hand on finished messages in order until at most ``keep`` remain (waiting for the oldest when
        more remain); False when the daemon aborted while the sink's queue was full."""
        while self._pending and (len(self._pending) > keep or self._pending[0].done()):
            while not self._pending[0].done():
                if self.abort.is_set():
                    return False
                wait([self._pending[0]], timeout=0.2)
            msg = self._pending[0].result()
            if not self.outbox.put(msg, abort=self.abort):
                return False
            self._pending.popleft()
            self.handled += 1
        return True

    def _submit(self, pool: ThreadPoolExecutor, msg: Message) -> None:
        if isinstance(msg, FrameResult):
            self._pending.append(pool.submit(self._write, msg, self.writer.plan(msg)))
        else:  # failures and gaps keep their place among the frames
            done: Future[Message] = Future()
            done.set_result(msg)
            self._pending.append(done)

    def run(self) -> None:
        pool = ThreadPoolExecutor(
            self.workers,
            thread_name_prefix="evidence",
            initializer=lower_thread_priority,
            initargs=(self.nice,),
        )
        try:
            while not self.abort.is_set():
                self.heartbeat = time.monotonic()
                if not self._pass_on(keep=2 * self.workers):
                    return
                try:
                    msg = self.inbox.get(timeout=0.05 if self._pending else 0.2)
                except Empty:
                    continue
                if isinstance(msg, EndOfStream):
                    if self._pass_on(keep=0):
                        self.outbox.put(END)
                    return
                self._submit(pool, msg)
        finally:  # on abort, writes not yet started are dropped (their frames are read again on restart)
            aborted = self.abort.is_set()
            pool.shutdown(wait=not aborted, cancel_futures=aborted)
