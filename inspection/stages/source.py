"""Source stage: reads the source into the pipeline, skipping frames the database already holds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from inspection.messages import FailedFrame, Frame
from inspection.queues import END, BoundedQueue
from inspection.sources.base import Source

log = logging.getLogger("steel.daemon")


class SourceStage(threading.Thread):
    """The first thread of the pipeline; the source's own waits are on the daemon's stop event.

    Args:
        source: an opened source (iterator of source events with ``close()``).
        outbox: the preprocess stage's queue.
        skip: ``skip(seq)`` is True for frames already stored (a restart resumes after them).
        stop: set to stop reading (drain); abort: set to give up waiting on a full queue.
    """

    def __init__(
        self,
        source: Source,
        outbox: BoundedQueue,
        *,
        skip: Callable[[int], bool],
        stop: threading.Event,
        abort: threading.Event,
    ) -> None:
        super().__init__(name="stage-source", daemon=True)
        self.source = source
        self.outbox = outbox
        self.skip = skip
        self.stop = stop
        self.abort = abort
        self.heartbeat = time.monotonic()
        self.error: BaseException | None = None
        self.read = 0

    def run(self) -> None:
        try:
            for event in self.source:
                self.heartbeat = time.monotonic()
                if self.stop.is_set():
                    # What a source yields once stopped is a by-product of stopping (a line-scan frame cut
                    # short, keyed like the full frame): not stored, so a restart reads it whole.
                    break
                if isinstance(event, Frame | FailedFrame) and self.skip(event.seq):
                    continue
                self.read += 1
                if not self.outbox.put(event, abort=self.abort):
                    break
                if self.stop.is_set():
                    break
        except Exception as exc:  # a source that gives up ends the stream; what was read is kept
            log.exception("source %s stopped", getattr(self.source, "name", "?"))
            self.error = exc
        finally:
            self.source.close()
            self.outbox.put(END)
