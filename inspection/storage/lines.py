"""Production lines and their coils, created on first use by whoever names them first.

The daemon's config names a line and its source names coils; neither is registered beforehand, so a
frame, a gap or a coil event creates them (an idempotent insert: two writers naming the same coil at once
get the same row). Closing and grading a coil is :mod:`inspection.storage.coil_events`' job. Functions take
the caller's ``Session`` and never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspection.storage.idempotent import insert_ignore
from inspection.storage.schema import Coil, Line, utcnow


def get_or_create_line(
    session: Session, name: str, *, description: str | None = None, mm_per_line: float | None = None
) -> int:
    """Id of the line ``name``, created with ``description``/``mm_per_line`` if new (else left as is)."""
    line_id = session.scalar(select(Line.id).where(Line.name == name))
    if line_id is None:
        values = {
            "name": name,
            "description": description,
            "mm_per_line": mm_per_line,
            "created_at": utcnow(),
        }
        line_id = insert_ignore(session, Line, values, ["name"])
        if line_id is None:  # created concurrently
            line_id = session.execute(select(Line.id).where(Line.name == name)).scalar_one()
    return int(line_id)


def get_or_create_coil(session: Session, *, line: str, code: str, started_at: datetime | None = None) -> int:
    """Id of coil ``code`` on line ``line`` (both created if new; ``started_at`` only set on creation)."""
    return coil_id_on_line(session, get_or_create_line(session, line), code, started_at)


def coil_id_on_line(session: Session, line_id: int, code: str, started_at: datetime | None = None) -> int:
    """Id of coil ``code`` on the line with id ``line_id`` (created if new; ``started_at`` only then)."""
    where = (Coil.line_id == line_id, Coil.code == code)
    coil_id = session.scalar(select(Coil.id).where(*where))
    if coil_id is None:
        values = {"line_id": line_id, "code": code, "started_at": started_at, "created_at": utcnow()}
        coil_id = insert_ignore(session, Coil, values, ["line_id", "code"])
        if coil_id is None:
            coil_id = session.execute(select(Coil.id).where(*where)).scalar_one()
    return int(coil_id)
