"""Bounded queues between daemon stages, with an explicit backpressure policy.

``block``: a full queue makes the producer wait (nothing is lost; the source slows down or, for a
camera that cannot wait, its own buffer overflows). ``drop_oldest``: a full queue discards its oldest
frame to make room, and the drop is counted and handed to ``on_drop`` so a "dropped" row is written:
a dropped frame is never silent. End-of-stream markers are never dropped.

Hand-written rather than ``queue.Queue`` because that has no drop-oldest and no drop callback.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, TypeAlias

from inspection.messages import Message


class EndOfStream:
    """Marker a stage forwards after its last message so the next stage can flush and stop."""

    def __repr__(self) -> str:
        return "END"


END = EndOfStream()


QueueItem: TypeAlias = Message | EndOfStream
"""What travels in a queue: a message, or the end-of-stream marker after the last one."""


class Empty(Exception):
    pass


class BoundedQueue:
    def __init__(
        self,
        name: str,
        maxsize: int,
        *,
        policy: Literal["block", "drop_oldest"] = "block",
        on_drop: Callable[[Message], None] | None = None,
    ):
        if maxsize < 1:
            raise ValueError(f"queue {name}: maxsize must be >= 1")
        self.name = name
        self.maxsize = maxsize
        self.policy = policy
        self.on_drop = on_drop
        self.dropped = 0
        self._items: deque[QueueItem] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: QueueItem, *, abort: threading.Event | None = None, poll_s: float = 0.1) -> bool:
        """Enqueue ``item``; returns False only when ``abort`` was set while blocked (item not queued)."""
        dropped = None
        with self._cond:
            while len(self._items) >= self.maxsize and item is not END:
                if self.policy == "drop_oldest":
                    dropped = self._pop_droppable()
                    if dropped is not None:
                        break
                if abort is not None and abort.is_set():
                    return False
                self._cond.wait(poll_s)
            self._items.append(item)
            self._cond.notify_all()
        if dropped is not None:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop(dropped)
        return True

    def _pop_droppable(self) -> Message | None:
        for i, queued in enumerate(self._items):
            if not isinstance(queued, EndOfStream):
                del self._items[i]
                return queued
        return None

    def get(self, timeout: float) -> QueueItem:
        """The oldest item; raises :class:`Empty` after ``timeout`` seconds with nothing to return."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Empty
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
            return item
