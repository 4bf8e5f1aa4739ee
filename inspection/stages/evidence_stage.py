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
from collections.abc import Callable

from inspection.messages import FrameResult, Message
from inspection.metrics import DaemonMetrics
from inspection.queues import BoundedQueue
from inspection.stages.evidence import EvidenceWriter
from inspection.stages.ordered_pool import OrderedPoolStage, timed

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


class EvidenceStage(OrderedPoolStage[FrameResult]):
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

    def init_worker(self) -> None:
        lower_thread_priority(self.nice)

    def prepare(self, msg: FrameResult) -> Callable[[], list[Message]]:
        plan = self.writer.plan(msg)  # in frame order: the live view's refresh clock is per line

        def write() -> list[Message]:
            return [dataclasses.replace(msg, evidence=self.writer.write_safely(msg, plan))]

        return lambda: timed(self, write)
