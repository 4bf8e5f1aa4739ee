"""What every query module shares: connections, rows to frames, and the filters as ``WHERE`` terms.

Filters select defects by ``defects.created_at`` and frames by ``frames.processed_at``; the daemon writes
the same instant to both, so frame and defect counts over a time range agree. Only frames with status
``ok`` count as inspected; ``failed`` and ``dropped`` frames are counted apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    cast,
    func,
)

from dashboard.filters import Filters
from inspection.storage.schema import Defect, Frame

Bind = Engine | Connection


@contextmanager
def connect(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def to_frame(conn: Connection, stmt: Any, columns: Sequence[str]) -> pd.DataFrame:
    rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def aware(value: Any) -> datetime | None:
    """A datetime from a raw row value (``func.min`` returns text on SQLite, aware UTC on PostgreSQL)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------- filters -> WHERE


def _window_terms(
    f: Filters, *, at: Any, line_id: Any, coil_id: Any | None, model_version_id: Any
) -> list[ColumnElement[bool]]:
    """The filter terms defects and frames share: time window, lines, coils, model versions."""
    terms: list[ColumnElement[bool]] = []
    if f.start is not None:
        terms.append(at >= f.start)
    if f.end is not None:
        terms.append(at < f.end)
    if f.line_ids:
        terms.append(line_id.in_(f.line_ids))
    if f.coil_ids and coil_id is not None:
        terms.append(coil_id.in_(f.coil_ids))
    if f.model_version_ids:
        terms.append(model_version_id.in_(f.model_version_ids))
    return terms


def defect_conditions(f: Filters, *, with_coils: bool = True) -> list[ColumnElement[bool]]:
    """``WHERE`` terms selecting the defects of ``f`` (``with_coils=False`` ignores its coil filter)."""
    terms = _window_terms(
        f,
        at=Defect.created_at,
        line_id=Defect.line_id,
        coil_id=Defect.coil_id if with_coils else None,
        model_version_id=Defect.model_version_id,
    )
    if f.classes:
        terms.append(Defect.class_name.in_(f.classes))
    if f.min_score > 0:
        terms.append(Defect.score >= f.min_score)
    return terms


def frame_conditions(f: Filters) -> list[ColumnElement[bool]]:
    """``WHERE`` terms selecting the frames of ``f`` (class and score do not apply to frames)."""
    return _window_terms(
        f,
        at=Frame.processed_at,
        line_id=Frame.line_id,
        coil_id=Frame.coil_id,
        model_version_id=Frame.model_version_id,
    )


def epoch_s(column: Any, dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 (UTC) of a ``UTCDateTime`` column."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", column)), BigInteger)
    raise NotImplementedError(f"the dashboard supports SQLite and PostgreSQL, not {dialect}")


def floor_div(value: Any, size: float, dialect: str) -> ColumnElement[int]:
    """``floor(value / size)`` as an integer (SQLite's CAST truncates, so only for values >= 0 there)."""
    if dialect == "sqlite":
        return cast(value / size, Integer)
    return cast(func.floor(value / size), BigInteger)
