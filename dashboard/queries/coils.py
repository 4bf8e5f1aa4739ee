"""Coils under the filters and the defects of one coil along and across the strip (Coil map)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import (
    Subquery,
    and_,
    case,
    func,
    select,
)

from dashboard.filters import Filters
from dashboard.queries.base import (
    Bind,
    connect,
    defect_conditions,
    floor_div,
    frame_conditions,
    to_frame,
)
from inspection.storage.schema import Coil, CoilGrade, Defect, Frame, Line

COIL_COLUMNS = [
    "coil_id", "line", "code", "started_at", "ended_at", "length_m", "frames", "metres", "defects",
    "grade", "grade_reasons", "graded_at",
]  # fmt: skip


def _inspected_coils(f: Filters) -> Subquery:
    """Per coil with ok frames under the filters: ``coil_id, frames, metres, last_at``."""
    return (
        select(
            Frame.coil_id.label("coil_id"),
            func.count().label("frames"),
            func.sum(Frame.length_m).label("metres"),
            func.max(Frame.processed_at).label("last_at"),
        )
        .where(Frame.coil_id.is_not(None), Frame.status == "ok", *frame_conditions(f))
        .group_by(Frame.coil_id)
        .subquery()
    )


def list_coils(bind: Bind, f: Filters, *, limit: int = 500) -> pd.DataFrame:
    """Coils with inspected frames under the filters, latest first (``COIL_COLUMNS``).

    ``length_m``/``ended_at`` are null while a coil is open; ``grade`` (with its reasons, a list) is the
    whole coil's grade under the grading rules, null until the closed coil is graded. ``frames``,
    ``metres`` and ``defects`` count what the filters select.
    """
    frames = _inspected_coils(f)
    defects = (
        select(Defect.coil_id.label("coil_id"), func.count().label("defects"))
        .where(Defect.coil_id.is_not(None), *defect_conditions(f))
        .group_by(Defect.coil_id)
        .subquery()
    )
    stmt = (
        select(
            Coil.id,
            Line.name,
            Coil.code,
            Coil.started_at,
            Coil.ended_at,
            Coil.length_m,
            frames.c.frames,
            frames.c.metres,
            func.coalesce(defects.c.defects, 0),
            CoilGrade.grade,
            CoilGrade.reasons,
            CoilGrade.graded_at,
        )  # fmt: skip
        .join(frames, frames.c.coil_id == Coil.id)
        .join(Line, Line.id == Coil.line_id)
        .outerjoin(defects, defects.c.coil_id == Coil.id)
        .outerjoin(CoilGrade, CoilGrade.coil_id == Coil.id)
        .order_by(frames.c.last_at.desc(), Coil.id.desc())
        .limit(limit)
    )
    with connect(bind) as conn:
        return to_frame(conn, stmt, COIL_COLUMNS)


COIL_DEFECT_COLUMNS = [
    "id", "class_name", "score", "position_m", "cross_m", "length_m", "width_m", "surface",
]  # fmt: skip


def coil_defects(bind: Bind, f: Filters, coil_id: int, *, limit: int = 20_000) -> pd.DataFrame:
    """Defects of one coil with a known position, along the strip (``COIL_DEFECT_COLUMNS``); ``surface``
    is the strip surface their frame shows (``top``/``bottom``, null when the source did not say)."""
    stmt = (
        select(
            Defect.id,
            Defect.class_name,
            Defect.score,
            Defect.position_m,
            Defect.cross_m,
            Defect.length_m,
            Defect.width_m,
            Frame.surface,
        )  # fmt: skip
        .join(Frame, Frame.id == Defect.frame_id)
        .where(
            Defect.coil_id == coil_id,
            Defect.position_m.is_not(None),
            Defect.cross_m.is_not(None),
            *defect_conditions(f, with_coils=False),
        )
        .order_by(Defect.position_m, Defect.id)
        .limit(limit)
    )
    with connect(bind) as conn:
        return to_frame(conn, stmt, COIL_DEFECT_COLUMNS)


def count_coil_defects(bind: Bind, f: Filters, coil_id: int) -> tuple[int, int]:
    """``(with a position, without)``: defects of the coil that can and cannot be placed on the map."""
    placed = and_(Defect.position_m.is_not(None), Defect.cross_m.is_not(None))
    stmt = select(func.count(), func.sum(case((placed, 1), else_=0))).where(
        Defect.coil_id == coil_id, *defect_conditions(f, with_coils=False)
    )
    with connect(bind) as conn:
        n, n_placed = conn.execute(stmt).one()
    return int(n_placed or 0), int(n or 0) - int(n_placed or 0)


def coil_density(
    bind: Bind, f: Filters, coil_id: int, *, along_bin_m: float, across_bin_m: float
) -> pd.DataFrame:
    """Defect counts on a grid of the coil: columns ``position_m, cross_m, class_name, surface, defects``.

    ``position_m``/``cross_m`` are the lower edges of the bins; for coils with too many defects to plot
    one by one.
    """
    with connect(bind) as conn:
        dialect = conn.dialect.name
        along = floor_div(Defect.position_m, along_bin_m, dialect).label("a")
        across = floor_div(Defect.cross_m, across_bin_m, dialect).label("c")
        rows = conn.execute(
            select(along, across, Defect.class_name, Frame.surface, func.count())
            .join(Frame, Frame.id == Defect.frame_id)
            .where(
                Defect.coil_id == coil_id,
                Defect.position_m.is_not(None),
                Defect.cross_m.is_not(None),
                *defect_conditions(f, with_coils=False),
            )
            .group_by(along, across, Defect.class_name, Frame.surface)
            .order_by(along, across, Defect.class_name, Frame.surface)
        ).all()
    return pd.DataFrame(
        [(int(a) * along_bin_m, int(c) * across_bin_m, str(k), s, int(n)) for a, c, k, s, n in rows],
        columns=["position_m", "cross_m", "class_name", "surface", "defects"],
    )
