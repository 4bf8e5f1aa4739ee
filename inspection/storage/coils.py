"""Closing coils after the fact: a backfill for coils the daemon left open (issue 16 item 4).

The daemon closes a coil when its source moves to the next one (``lines.close_coil``). Coils left
open by an older daemon, a crash or a line that stopped are closed here: a coil is over when a later coil
started on its line, or when its line has sent no frame of it for ``idle_s`` seconds. Its end is its last
frame and its length the furthest strip position a frame reached (``position_m + length_m``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from inspection.storage.schema import Coil, Frame, utcnow


def _utc(value: datetime | str) -> datetime:
    """An aggregate's time as aware UTC (SQLite may hand ``MAX`` of a time column back as text)."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def close_stale_coils(session: Session, *, idle_s: float, now: datetime | None = None) -> list[int]:
    """Close every open coil that is over (see the module); the ids closed, in the caller's transaction."""
    now = now or utcnow()
    closed: list[int] = []
    open_coils = session.execute(
        select(Coil.id, Coil.line_id, Coil.started_at).where(Coil.ended_at.is_(None)).order_by(Coil.id)
    ).all()
    for coil_id, line_id, started_at in open_coils:
        last_at, reach_m = session.execute(
            select(func.max(Frame.processed_at), func.max(Frame.position_m + Frame.length_m)).where(
                Frame.coil_id == coil_id
            )
        ).one()
        if last_at is None:
            continue  # no frame yet: nothing to close
        last_at = _utc(last_at)
        newer = session.scalar(
            select(func.count()).where(
                Coil.line_id == line_id, Coil.id != coil_id, Coil.started_at > (started_at or last_at)
            )
        )
        if not newer and now - last_at < timedelta(seconds=idle_s):
            continue
        values: dict[str, object] = {"ended_at": last_at}
        if reach_m is not None:
            values["length_m"] = func.coalesce(Coil.length_m, float(reach_m))
        session.execute(update(Coil).where(Coil.id == coil_id).values(**values))
        closed.append(int(coil_id))
    return closed
