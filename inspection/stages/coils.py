"""Which coil each source is on, and when a coil starts and ends (the sink stores the events).

A coil ends when its source's frames move on to another coil, when the daemon drains, or when no frame of
it arrived for ``gap_s`` seconds (the line stopped; a later frame of the same coil reopens it). Each end
carries the grading rules, so storing it grades the coil.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from inspection.storage.coil_events import CoilEvent
from inspection.storage.grading import GradingRules


@dataclass
class _OpenCoil:
    line: str
    coil: str
    last_at: datetime  # the last frame's capture time: the coil's end if it ends now
    last_seen: float  # monotonic time of that frame
    open: bool = True


class CoilWatch:
    """Per source, the coil it is on; every method returns the coil events to store, in order."""

    def __init__(
        self,
        *,
        gap_s: float | None,
        grading: GradingRules | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gap_s = gap_s
        self.grading = grading
        self._clock = clock
        self._by_source: dict[str, _OpenCoil] = {}

    def frame(self, source: str, line: str | None, coil: str | None, at: datetime) -> list[CoilEvent]:
        """A frame of ``source`` on ``(line, coil)`` was captured at ``at``."""
        current = self._by_source.get(source)
        same = current is not None and (current.line, current.coil) == (line, coil)
        if current is not None and same:
            current.last_at, current.last_seen = max(current.last_at, at), self._clock()
            if current.open:
                return []
            current.open = True  # the same coil goes on after a gap
            return [CoilEvent(line=current.line, coil=current.coil, kind="start", at=at)]
        events = self._close(current) if current is not None else []
        if line is None or coil is None:
            self._by_source.pop(source, None)
            return events
        self._by_source[source] = _OpenCoil(line, coil, at, self._clock())
        return [*events, CoilEvent(line=line, coil=coil, kind="start", at=at)]

    def idle(self) -> list[CoilEvent]:
        """Coils whose source has been silent for ``gap_s`` end (at their last frame)."""
        if self.gap_s is None:
            return []
        now = self._clock()
        events: list[CoilEvent] = []
        for current in self._by_source.values():
            if current.open and now - current.last_seen >= self.gap_s:
                events += self._close(current)
        return events

    def drain(self) -> list[CoilEvent]:
        """The daemon stops: every open coil ends at its last frame."""
        events = [event for current in self._by_source.values() for event in self._close(current)]
        self._by_source.clear()
        return events

    def _close(self, current: _OpenCoil) -> list[CoilEvent]:
        if not current.open:
            return []
        current.open = False
        end = CoilEvent(
            line=current.line, coil=current.coil, kind="end", at=current.last_at, grading=self.grading
        )
        return [end]
