"""What the daemon's exit summary and log name for each record it could not store (storage full)."""

from __future__ import annotations

from datetime import UTC, datetime

from inspection.daemon import _entry_key
from inspection.storage.coil_events import CoilEvent
from inspection.storage.records import GapRecord


def test_a_coil_event_left_unstored_is_named_by_its_line_and_coil() -> None:
    event = CoilEvent(line="L1", coil="C-0042", kind="end", at=datetime(2026, 1, 1, tzinfo=UTC))

    assert _entry_key(event) == {"kind": "CoilEvent", "line": "L1", "coil": "C-0042"}


def test_a_gap_left_unstored_is_named_by_its_source_without_a_seq() -> None:
    gap = GapRecord(
        source="cam0",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        ended_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        reason="camera disconnected",
    )

    assert _entry_key(gap) == {"kind": "GapRecord", "source": "cam0", "seq": None}
