"""Frames, metres and defects under the filters: the Overview's figures and the Pareto."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import (
    func,
    select,
)

from dashboard.filters import Filters
from dashboard.queries.base import (
    Bind,
    connect,
    defect_conditions,
    frame_conditions,
    to_frame,
)
from inspection.storage.schema import Defect, Frame


@dataclass(frozen=True, slots=True)
class Totals:
    """Frames and metres inspected and defects found under one set of filters."""

    frames_ok: int
    frames_failed: int
    frames_dropped: int
    metres: float
    defects: int

    @property
    def per_1000_frames(self) -> float | None:
        return 1000.0 * self.defects / self.frames_ok if self.frames_ok else None

    @property
    def per_100_m(self) -> float | None:
        return 100.0 * self.defects / self.metres if self.metres > 0 else None


def totals(bind: Bind, f: Filters) -> Totals:
    """Frames by status, metres inspected (``SUM(length_m)`` of ok frames) and the defect count."""
    with connect(bind) as conn:
        by_status = {
            str(status): (int(n), float(m or 0.0))
            for status, n, m in conn.execute(
                select(Frame.status, func.count(), func.sum(Frame.length_m))
                .where(*frame_conditions(f))
                .group_by(Frame.status)
            )
        }
        defects = int(conn.scalar(select(func.count()).select_from(Defect).where(*defect_conditions(f))) or 0)
    ok_frames, metres = by_status.get("ok", (0, 0.0))
    return Totals(
        frames_ok=ok_frames,
        frames_failed=by_status.get("failed", (0, 0.0))[0],
        frames_dropped=by_status.get("dropped", (0, 0.0))[0],
        metres=metres,
        defects=defects,
    )


def defects_by_class(bind: Bind, f: Filters) -> pd.DataFrame:
    """Columns ``class_name, defects``, most frequent class first (the Pareto order).

    Counts only, so the ``(class_name, created_at)`` index answers it without reading the defect rows.
    """
    n = func.count().label("defects")
    stmt = (
        select(Defect.class_name, n)
        .where(*defect_conditions(f))
        .group_by(Defect.class_name)
        .order_by(n.desc(), Defect.class_name)
    )
    with connect(bind) as conn:
        df = to_frame(conn, stmt, ["class_name", "defects"])
    return df.astype({"defects": "int64"})


def pareto(bind: Bind, f: Filters) -> pd.DataFrame:
    """Columns ``class_name, defects, share_pct, cumulative_pct`` in Pareto order."""
    df = defects_by_class(bind, f)
    total = int(df["defects"].sum())
    df["share_pct"] = 100.0 * df["defects"] / total if total else 0.0
    df["cumulative_pct"] = df["share_pct"].cumsum()
    return df
