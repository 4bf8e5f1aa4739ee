"""Defects and inspected frames per time bucket (hour, shift, day), for the Trends page's charts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Connection,
    case,
    func,
    select,
)

from dashboard.filters import Filters
from dashboard.queries.base import (
    Bind,
    connect,
    defect_conditions,
    epoch_s,
    frame_conditions,
)
from inspection.storage.schema import Defect, Frame

BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "shift": 8 * 3600, "day": 86400}
"""Trend bucket sizes. Shifts are 8 h long, aligned on ``shift_start_hour`` (UTC); days on UTC midnight."""


def _bucket_index(column: Any, dialect: str, size_s: int, offset_s: int) -> ColumnElement[int]:
    return (epoch_s(column, dialect) - offset_s) // size_s


def bucket_start(index: int, size_s: int, offset_s: int) -> datetime:
    """The UTC start of bucket ``index`` (the inverse of the SQL bucket expression)."""
    return datetime.fromtimestamp(int(index) * size_s + offset_s, UTC)


def bucket_params(bucket: str, *, shift_start_hour: int = 6) -> tuple[int, int]:
    """``(size_s, offset_s)`` of a bucket name; shifts start at ``shift_start_hour`` UTC."""
    if bucket not in BUCKET_SECONDS:
        raise ValueError(f"unknown bucket {bucket!r}; expected one of {list(BUCKET_SECONDS)}")
    return BUCKET_SECONDS[bucket], (shift_start_hour % 8) * 3600 if bucket == "shift" else 0


def defect_trend(bind: Bind, f: Filters, *, bucket: str, shift_start_hour: int = 6) -> pd.DataFrame:
    """Defects per bucket and class: columns ``bucket_start, class_name, defects`` (empty buckets absent)."""
    size, offset = bucket_params(bucket, shift_start_hour=shift_start_hour)
    with connect(bind) as conn:
        idx = _bucket_index(Defect.created_at, conn.dialect.name, size, offset).label("b")
        stmt = (
            select(idx, Defect.class_name, func.count())
            .where(*defect_conditions(f))
            .group_by(idx, Defect.class_name)
            .order_by(idx, Defect.class_name)
        )
        rows = conn.execute(stmt).all()
    return pd.DataFrame(
        [(bucket_start(b, size, offset), c, int(n)) for b, c, n in rows],
        columns=["bucket_start", "class_name", "defects"],
    )


def frame_trend(bind: Bind, f: Filters, *, bucket: str, shift_start_hour: int = 6) -> pd.DataFrame:
    """Inspected units per bucket: columns ``bucket_start, frames, metres, defects, frames_with_defects``.

    ``frames``/``metres`` count ok frames (the u-chart's units), ``defects`` the filtered defects and
    ``frames_with_defects`` the frames with at least one of them (the p-chart's nonconforming units).
    Buckets without inspected frames are absent: they are no sample.

    Without a class or score filter every defect of a frame counts, so the frames' own ``n_defects``
    answer in the same pass over the frames (the defects table, 2-3 times larger, is not read).
    """
    size, offset = bucket_params(bucket, shift_start_hour=shift_start_hour)
    with connect(bind) as conn:
        fidx = _bucket_index(Frame.processed_at, conn.dialect.name, size, offset).label("b")
        with_defects = func.sum(case((Frame.n_defects > 0, 1), else_=0))
        frames = conn.execute(
            select(fidx, func.count(), func.sum(Frame.length_m), func.sum(Frame.n_defects), with_defects)
            .where(Frame.status == "ok", *frame_conditions(f))
            .group_by(fidx)
        ).all()
        if not f.classes and f.min_score <= 0:
            defects = {int(b): (int(nd or 0), int(nf or 0)) for b, _, _, nd, nf in frames}
        else:
            defects = _defects_per_bucket(conn, f, size, offset)
    rows = []
    for b, n, metres, *_ in sorted(frames, key=lambda r: int(r[0])):
        nd, nf = defects.get(int(b), (0, 0))
        rows.append((bucket_start(b, size, offset), int(n), float(metres or 0.0), nd, min(nf, int(n))))
    return pd.DataFrame(rows, columns=["bucket_start", "frames", "metres", "defects", "frames_with_defects"])


def _defects_per_bucket(conn: Connection, f: Filters, size: int, offset: int) -> dict[int, tuple[int, int]]:
    """Bucket index -> (defects, distinct frames with one) for the filtered defects."""
    idx = _bucket_index(Defect.created_at, conn.dialect.name, size, offset).label("b")
    return {
        int(b): (int(n), int(nf))
        for b, n, nf in conn.execute(
            select(idx, func.count(), func.count(Defect.frame_id.distinct()))
            .where(*defect_conditions(f))
            .group_by(idx)
        )
    }
