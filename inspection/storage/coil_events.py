"""Coil starts and ends as the daemon sees them, stored like frames (directly, or through the spool).

A coil ends when its source moves on to the next coil, when the daemon drains, or when no frame of it came
for a configured gap; it starts (or is reopened, when a coil closed by a gap or by a restart goes on) with
its first frame of a run. At the end the coil's ``length_m`` is worked out from its frames: the sum of
``frames.length_m`` per source (each frame's newly covered strip), the longest source when two cameras
see the coil (top and bottom surface). ``backfill_open_coils`` closes what a killed daemon left open.

An end event carries the grading rules in force when the coil closed: storing it grades the coil
(``inspection.storage.grading``) in the same transaction, also when it is replayed from the spool later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from inspection.storage.grading import GradingRules, grade_coil
from inspection.storage.lines import get_or_create_coil
from inspection.storage.schema import Coil, CoilGrade, Frame, Line

CoilEventKind = Literal["start", "end"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CoilEvent:
    """Coil ``coil`` on line ``line`` started (or went on) / ended at ``at``; an end graded by ``grading``
    (None: not graded when stored)."""

    line: str
    coil: str
    kind: CoilEventKind
    at: datetime
    grading: GradingRules | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "line": self.line,
            "coil": self.coil,
            "kind": self.kind,
            "at": self.at.isoformat(),
        }
        if self.grading is not None:
            data["grading"] = self.grading.model_dump(mode="json")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kind = data["kind"]
        if kind not in ("start", "end"):
            raise ValueError(f"coil event kind {kind!r}")
        rules = data.get("grading")
        return cls(
            line=str(data["line"]),
            coil=str(data["coil"]),
            kind=kind,
            at=datetime.fromisoformat(data["at"]),
            grading=None if rules is None else GradingRules.model_validate(rules),
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
    """Apply a coil start or end, grading an end that carries rules (idempotent: replaying it gives the
    same rows). Always True."""
    coil_id = get_or_create_coil(session, line=event.line, code=event.coil)
    if event.kind == "start":
        values: dict[str, Any] = {"started_at": func.coalesce(Coil.started_at, event.at), "ended_at": None}
        # A coil reopened (frames after a gap closed it) is not graded until it closes again.
        session.execute(delete(CoilGrade).where(CoilGrade.coil_id == coil_id))
    else:
        values = {"ended_at": event.at, "length_m": coil_length_m(session, coil_id)}
    session.execute(update(Coil).where(Coil.id == coil_id).values(**values))
    if event.kind == "end" and event.grading is not None:
        grade_coil(session, coil_id, event.grading)
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
