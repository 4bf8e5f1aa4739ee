"""Coil starts and ends as the daemon sees them, stored like frames (directly, or through the spool).

A coil ends when its source moves on to the next coil, when the daemon drains, or when no frame of it came
for a configured gap; it starts (or is reopened, when a coil closed by a gap or by a restart goes on) with
its first frame of a run. At the end the coil's ``length_m`` is worked out from its frames: the sum of
``frames.length_m`` per source (each frame's newly covered strip), the longest source when two cameras
see the coil (top and bottom surface). ``backfill_open_coils`` closes what a killed daemon left open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from inspection.storage.lines import get_or_create_coil
from inspection.storage.schema import Coil, Frame, Line

CoilEventKind = Literal["start", "end"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CoilEvent:
    """Coil ``coil`` on line ``line`` started (or went on) / ended at ``at``."""

    line: str
    coil: str
    kind: CoilEventKind
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "coil": self.coil, "kind": self.kind, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kind = data["kind"]
        if kind not in ("start", "end"):
            raise ValueError(f"coil event kind {kind!r}")
        return cls(
            line=str(data["line"]), coil=str(data["coil"]), kind=kind, at=datetime.fromisoformat(data["at"])
        )


def coil_length_m(session: Session, coil_id: int) -> float | None:
    """Strip length of a coil from its frames (longest source); None when no frame knows its length."""
    per_source = (
        select(func.sum(Frame.length_m).label("length_m"))
        .where(Frame.coil_id == coil_id)
        .group_by(Frame.source)
        .subquery()
    )
    value = session.scalar(select(func.max(per_source.c.length_m)))
    return None if value is None else float(value)


def record_coil_event(session: Session, event: CoilEvent) -> bool:
    """Apply a coil start or end (idempotent: replaying it gives the same row). Always True."""
    coil_id = get_or_create_coil(session, line=event.line, code=event.coil)
    if event.kind == "start":
        values: dict[str, Any] = {"started_at": func.coalesce(Coil.started_at, event.at), "ended_at": None}
    else:
        values = {"ended_at": event.at, "length_m": coil_length_m(session, coil_id)}
    session.execute(update(Coil).where(Coil.id == coil_id).values(**values))
    return True


def backfill_open_coils(session: Session, *, source: str) -> list[str]:
    """Close the coils ``source`` has frames of that are still open (a daemon killed before it closed
    them): ended at their last frame, length from their frames. Returns the coil codes closed."""
    last_frame = func.max(func.coalesce(Frame.captured_at, Frame.processed_at))
    rows = session.execute(
        select(Coil.id, Coil.code, Line.name, last_frame)
        .join(Frame, Frame.coil_id == Coil.id)
        .join(Line, Line.id == Coil.line_id)
        .where(Coil.ended_at.is_(None), Frame.source == source)
        .group_by(Coil.id, Coil.code, Line.name)
    ).all()
    for coil_id, _code, _line, ended_at in rows:
        values = {"ended_at": ended_at, "length_m": coil_length_m(session, coil_id)}
        session.execute(update(Coil).where(Coil.id == coil_id).values(**values))
    return [code for _, code, _, _ in rows]
