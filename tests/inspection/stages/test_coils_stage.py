"""The sink's coil watch on its own: which coil each source is on and the start/end events to store, on a
hand-turned clock (the stored rows are tested through the sink in tests/inspection/test_coils.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from inspection.stages.coils import CoilWatch
from inspection.storage.coil_events import CoilEvent
from tests.inspection.stages.conftest import T0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(coil: str, kind: str, seconds: float, line: str = "L1") -> CoilEvent:
    return CoilEvent(line=line, coil=coil, kind=kind, at=at(seconds))  # type: ignore[arg-type]


def test_a_coil_starts_with_its_first_frame_and_ends_at_its_last_when_the_next_coil_comes() -> None:
    watch = CoilWatch(gap_s=None)
    assert watch.frame("cam", "L1", "A", at(0)) == [event("A", "start", 0)]
    assert watch.frame("cam", "L1", "A", at(1)) == []
    assert watch.frame("cam", "L1", "B", at(2)) == [event("A", "end", 1), event("B", "start", 2)]
    assert watch.drain() == [event("B", "end", 2)]
    assert watch.drain() == []


def test_a_silent_coil_ends_after_the_gap_and_starts_again_when_its_frames_come_back() -> None:
    clock = Clock()
    watch = CoilWatch(gap_s=30.0, clock=clock)
    watch.frame("cam", "L1", "A", at(0))
    clock.now = 29.0
    assert watch.idle() == []
    clock.now = 30.0
    assert watch.idle() == [event("A", "end", 0)]
    assert watch.idle() == []  # ended once
    assert watch.frame("cam", "L1", "A", at(40)) == [event("A", "start", 40)]
    assert watch.drain() == [event("A", "end", 40)]


def test_without_a_gap_a_silent_coil_stays_open() -> None:
    clock = Clock()
    watch = CoilWatch(gap_s=None, clock=clock)
    watch.frame("cam", "L1", "A", at(0))
    clock.now = 1e6
    assert watch.idle() == []


def test_a_frame_of_no_coil_ends_the_open_one_and_opens_none() -> None:
    watch = CoilWatch(gap_s=None)
    watch.frame("cam", "L1", "A", at(0))
    assert watch.frame("cam", "L1", None, at(5)) == [event("A", "end", 0)]
    assert watch.drain() == []


def test_each_source_follows_its_own_coil() -> None:
    watch = CoilWatch(gap_s=None)
    assert watch.frame("top", "L1", "A", at(0)) == [event("A", "start", 0)]
    assert watch.frame("top2", "L2", "A", at(1)) == [event("A", "start", 1, line="L2")]
    assert watch.frame("top", "L1", "B", at(2)) == [event("A", "end", 0), event("B", "start", 2)]
    assert sorted(e.line for e in watch.drain()) == ["L1", "L2"]
