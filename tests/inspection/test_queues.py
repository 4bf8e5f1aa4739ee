"""BoundedQueue: FIFO with a bound; ``block`` waits for room, ``drop_oldest`` sheds (and reports) the oldest
item; the end-of-stream marker is never dropped and never waits."""

from __future__ import annotations

import threading
import time

import pytest

from inspection.queues import END, BoundedQueue, Empty


def test_fifo_and_empty_after_timeout() -> None:
    q = BoundedQueue("q", 3)
    for item in ("a", "b", "c"):
        assert q.put(item)
    assert len(q) == 3
    assert [q.get(timeout=0.1) for _ in range(3)] == ["a", "b", "c"]
    with pytest.raises(Empty):
        q.get(timeout=0.05)


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        BoundedQueue("q", 0)


def test_block_waits_for_room_and_loses_nothing() -> None:
    q = BoundedQueue("q", 1, policy="block")
    q.put(1)
    done = threading.Event()

    def producer() -> None:
        q.put(2)  # blocks until the consumer takes 1
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.3), "put on a full 'block' queue returned before there was room"
    assert q.get(timeout=1) == 1
    assert done.wait(5)
    thread.join()
    assert q.get(timeout=1) == 2 and q.dropped == 0


def test_block_gives_up_when_aborted() -> None:
    q = BoundedQueue("q", 1, policy="block")
    q.put("kept")
    abort = threading.Event()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(q.put("late", abort=abort, poll_s=0.02)))
    thread.start()
    time.sleep(0.1)
    abort.set()
    thread.join(timeout=5)
    assert result == [False]
    assert len(q) == 1 and q.get(timeout=0.1) == "kept"


def test_drop_oldest_counts_and_reports_each_drop() -> None:
    dropped: list[int] = []
    q = BoundedQueue("q", 2, policy="drop_oldest", on_drop=dropped.append)
    for item in range(5):
        assert q.put(item)  # never blocks
    assert q.dropped == 3 and dropped == [0, 1, 2]
    assert [q.get(timeout=0.1) for _ in range(2)] == [3, 4]


def test_end_is_never_dropped() -> None:
    dropped: list[object] = []
    q = BoundedQueue("q", 2, policy="drop_oldest", on_drop=dropped.append)
    q.put(END)
    q.put("a")
    q.put("b")  # full: the oldest droppable item goes, not END
    assert dropped == ["a"]
    assert [q.get(timeout=0.1) for _ in range(2)] == [END, "b"]


def test_end_never_waits_for_room() -> None:
    for policy in ("block", "drop_oldest"):
        q = BoundedQueue("q", 1, policy=policy)
        q.put("a")
        assert q.put(END)  # over the bound rather than lost or blocked
        assert len(q) == 2 and q.dropped == 0
        assert [q.get(timeout=0.1) for _ in range(2)] == ["a", END]


def test_drop_oldest_with_only_end_queued_waits_like_block() -> None:
    q = BoundedQueue("q", 1, policy="drop_oldest")
    q.put(END)
    abort = threading.Event()
    abort.set()
    assert q.put("x", abort=abort) is False  # nothing droppable: it would have to wait
    assert len(q) == 1 and q.dropped == 0
