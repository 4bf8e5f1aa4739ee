"""Helpers for the unit tests of each daemon stage on its own: real NEU-DET frames, and a way to run a
stage to the end of a hand-fed stream in the test's own thread (no timing, no other stages)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from datasets.settings import data_root
from inspection.messages import Frame, Message
from inspection.queues import END, BoundedQueue, Empty, EndOfStream
from inspection.stages.base import Stage

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def neu_image(index: int = 0) -> np.ndarray:
    """The ``index``-th NEU-DET development image (sorted by name) as ``(200, 200)`` uint8 grayscale."""
    path = sorted((data_root() / "images").glob("*.jpg"))[index]
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image


def neu_frame(seq: int, *, source: str = "camera:top", image_index: int = 0, **fields: object) -> Frame:
    """A frame of a real NEU image, captured ``seq`` seconds after :data:`T0`."""
    return Frame(source, seq, neu_image(image_index), T0 + timedelta(seconds=seq), **fields)  # type: ignore[arg-type]


def queues(size: int = 64) -> tuple[BoundedQueue, BoundedQueue]:
    """An inbox and an outbox for a stage under test."""
    return BoundedQueue("in", size), BoundedQueue("out", size)


def drain(queue: BoundedQueue) -> list[Message]:
    """Everything in ``queue`` up to its end-of-stream marker (which must be there)."""
    out: list[Message] = []
    while True:
        try:
            item = queue.get(timeout=0)
        except Empty:
            raise AssertionError(f"queue {queue.name} has no end-of-stream marker") from None
        if isinstance(item, EndOfStream):
            return out
        out.append(item)


def run_to_end(stage: Stage, messages: list[Message]) -> list[Message]:
    """Feed ``messages`` and the end marker to ``stage``, run it in this thread until it forwards the
    marker, and return what it passed on."""
    for msg in messages:
        stage.inbox.put(msg)
    stage.inbox.put(END)
    stage.run()
    assert stage.outbox is not None
    return drain(stage.outbox)


@pytest.fixture
def abort() -> threading.Event:
    return threading.Event()
