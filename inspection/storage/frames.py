"""What the daemon's sink stores per frame: the frame with its defects, the alarms raised for it, the gaps
between frames; and the reads a restarting daemon needs to go on without storing a frame twice.

Every write is idempotent on its key (frames ``(source, seq)``, alarms ``(frame, sink, kind, sent_at)``,
gaps ``(source, started_at)``), because the spool may replay any of them after an outage or a kill -9.
Functions take the caller's ``Session`` and never commit: a frame, its defects and the tracks it saw
again commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from inspection.storage.idempotent import insert_ignore
from inspection.storage.lines import coil_id_on_line, get_or_create_line
from inspection.storage.model_registry import model_version_id
from inspection.storage.records import AlarmRecord, DefectRecord, FrameRecord, GapRecord
from inspection.storage.schema import Alarm, Defect, Frame, Gap


class _FrameRefs(NamedTuple):
    """The ids a frame's row and its defects' rows point at (None where the frame names none)."""

    line_id: int | None
    coil_id: int | None
    model_id: int | None


def record_frame(
    session: Session,
    frame: FrameRecord,
    defects: Sequence[DefectRecord] = (),
    *,
    seen_again: Sequence[str] = (),
) -> bool:
    """Insert a frame and its defects; False (and nothing written) when ``(source, seq)`` is already stored.

    ``seen_again`` are track ids of defects stored with earlier frames of the same source that this frame
    saw again: their ``last_frame_seq`` moves forward to ``frame.seq`` (never backwards). Call inside a
    transaction: the frame, its defects and these updates commit together or not at all.
    """
    refs = _frame_refs(session, frame)
    frame_id = insert_ignore(
        session, Frame, _frame_row(frame, refs, n_defects=len(defects)), ["source", "seq"]
    )
    if frame_id is None:
        return False
    if defects:
        rows = [
            _defect_row(d, frame_id=frame_id, refs=refs, default_created_at=frame.processed_at)
            for d in defects
        ]
        # SQLAlchemy types a mapped class's __table__ as FromClause; for a declarative table it is a Table
        session.execute(Defect.__table__.insert(), rows)  # type: ignore[attr-defined]
    if seen_again:
        _advance_tracks(session, frame, seen_again)
    return True


def _frame_refs(session: Session, frame: FrameRecord) -> _FrameRefs:
    """The ids of the frame's line, coil and model version, each created on first use."""
    line_id = get_or_create_line(session, frame.line) if frame.line is not None else None
    coil_id = (
        coil_id_on_line(session, line_id, frame.coil)
        if frame.coil is not None and line_id is not None
        else None
    )
    return _FrameRefs(line_id, coil_id, model_version_id(session, frame.model_version))


def _frame_row(frame: FrameRecord, refs: _FrameRefs, *, n_defects: int) -> dict[str, Any]:
    return {
        "source": frame.source,
        "seq": frame.seq,
        "line_id": refs.line_id,
        "coil_id": refs.coil_id,
        "captured_at": frame.captured_at,
        "processed_at": frame.processed_at,
        "status": frame.status,
        "error": frame.error,
        "width": frame.width,
        "height": frame.height,
        "start_line": frame.start_line,
        "position_m": frame.position_m,
        "length_m": frame.length_m,
        "image_path": frame.image_path,
        "model_version_id": refs.model_id,
        "latency_ms": frame.latency_ms,
        "surface": frame.surface,
        "n_defects": n_defects,
    }


def _defect_row(
    d: DefectRecord, *, frame_id: int, refs: _FrameRefs, default_created_at: datetime
) -> dict[str, Any]:
    sx1, sy1, sx2, sy2 = d.strip_xyxy if d.strip_xyxy is not None else (None, None, None, None)
    x1, y1, x2, y2 = d.xyxy
    return {
        "frame_id": frame_id,
        "line_id": refs.line_id,
        "coil_id": refs.coil_id,
        "class_name": d.class_name,
        "score": d.score,
        "x1": x1,
        "y1": y1,
        "x2": x2,
        "y2": y2,
        "sx1": sx1,
        "sy1": sy1,
        "sx2": sx2,
        "sy2": sy2,
        "position_m": d.position_m,
        "cross_m": d.cross_m,
        "length_m": d.length_m,
        "width_m": d.width_m,
        "track_id": d.track_id,
        "first_frame_seq": d.first_frame_seq,
        "last_frame_seq": d.last_frame_seq,
        "model_version_id": refs.model_id,
        "crop_path": d.crop_path,
        "map_path": d.map_path,
        "created_at": d.created_at or default_created_at,
    }


def _advance_tracks(session: Session, frame: FrameRecord, seen_again: Sequence[str]) -> None:
    """Move ``last_frame_seq`` of the source's defects with these track ids forward to ``frame.seq``."""
    same_source = select(Frame.id).where(Frame.id == Defect.frame_id, Frame.source == frame.source).exists()
    session.execute(
        update(Defect)
        .where(
            Defect.track_id.in_([str(t) for t in seen_again]),
            same_source,
            or_(Defect.last_frame_seq.is_(None), Defect.last_frame_seq < frame.seq),
        )
        .values(last_frame_seq=frame.seq)
        .execution_options(synchronize_session=False)
    )


def has_frame(session: Session, source: str, seq: int) -> bool:
    """Whether frame ``(source, seq)`` is stored (whatever its status)."""
    return session.scalar(select(Frame.id).where(Frame.source == source, Frame.seq == seq)) is not None


def processed_seqs(session: Session, source: str, *, min_seq: int | None = None) -> set[int]:
    """Sequence numbers of ``source`` already stored (from ``min_seq`` on, to bound the set on long runs)."""
    stmt = select(Frame.seq).where(Frame.source == source)
    if min_seq is not None:
        stmt = stmt.where(Frame.seq >= min_seq)
    return {int(s) for s in session.scalars(stmt)}


def max_seq(session: Session, source: str) -> int | None:
    """Highest stored sequence number of ``source``; None when it has no frames yet."""
    value = session.scalar(select(func.max(Frame.seq)).where(Frame.source == source))
    return None if value is None else int(value)


def record_alarm(session: Session, alarm: AlarmRecord) -> bool:
    """Store an alarm for its (already stored) frame; False when this alarm event is already stored.

    Raises LookupError when the frame ``(source, seq)`` is not in the database.
    """
    frame_id = session.scalar(select(Frame.id).where(Frame.source == alarm.source, Frame.seq == alarm.seq))
    if frame_id is None:
        raise LookupError(f"alarm for frame {alarm.source}#{alarm.seq}, which is not stored")
    defect_id = None
    if alarm.track_id is not None:
        defect_id = session.scalar(
            select(Defect.id).where(Defect.frame_id == frame_id, Defect.track_id == alarm.track_id).limit(1)
        )
    values = {
        "frame_id": frame_id,
        "defect_id": defect_id,
        "sink": alarm.sink,
        "kind": alarm.kind,
        "payload": alarm.payload,
        "sent_at": alarm.sent_at,
        "status": alarm.status,
        "error": alarm.error,
    }
    return insert_ignore(session, Alarm, values, ["frame_id", "sink", "kind", "sent_at"]) is not None


def record_gap(session: Session, gap: GapRecord) -> bool:
    """Store a gap in a source's input; False when this gap (same source and start) is already stored."""
    line_id = get_or_create_line(session, gap.line) if gap.line is not None else None
    values = {
        "source": gap.source,
        "line_id": line_id,
        "started_at": gap.started_at,
        "ended_at": gap.ended_at,
        "reason": gap.reason,
        "first_missing_line": gap.first_missing_line,
        "missing_lines": gap.missing_lines,
    }
    return insert_ignore(session, Gap, values, ["source", "started_at"]) is not None
