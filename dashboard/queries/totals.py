"""Frames, metres and defects under the filters: the Overview's figures and the Pareto."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import (
    Integer,
    func,
    literal,
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
    """Frames and metres inspected and defects found under one set of filters.

    ``metres_by_line`` the metres per line id (``totals(by_line=True)``; strip widths differ by line),
    ``frame_size``
    the ``(width, height)`` in pixels every inspected frame shares, or None when they differ (then a rate
    per frame compares unlike units). Coils are counted by ``queries.list_coils``, which groups by coil
    anyway (a distinct count here would sort every frame).
    """

    frames_ok: int
    frames_failed: int
    frames_dropped: int
    metres: float
    defects: int
    metres_by_line: tuple[tuple[int, float], ...] = ()
    frame_size: tuple[int, int] | None = None

    @property
    def per_1000_frames(self) -> float | None:
        return 1000.0 * self.defects / self.frames_ok if self.frames_ok else None

    @property
    def per_100_m(self) -> float | None:
        return 100.0 * self.defects / self.metres if self.metres > 0 else None


def totals(bind: Bind, f: Filters, *, by_line: bool = False) -> Totals:
    """Frames by status, metres inspected (``SUM(length_m)`` of ok frames) and the defect count.

    One pass over the frames, grouped by status (and by line with ``by_line``, for per-line strip
    widths: it costs a third more), with the frame sizes' extremes.
    """
    line_id = Frame.line_id if by_line else literal(None, Integer).label("line_id")
    with connect(bind) as conn:
        rows = conn.execute(
            select(
                Frame.status,
                line_id,
                func.count(),
                func.sum(Frame.length_m),
                func.min(Frame.width),
                func.max(Frame.width),
                func.min(Frame.height),
                func.max(Frame.height),
            )  # fmt: skip
            .where(*frame_conditions(f))
            .group_by(Frame.status, *([Frame.line_id] if by_line else []))
        ).all()
        defects = int(conn.scalar(select(func.count()).select_from(Defect).where(*defect_conditions(f))) or 0)
    count = {s: sum(int(r[2]) for r in rows if r[0] == s) for s in ("ok", "failed", "dropped")}
    ok = [r for r in rows if r[0] == "ok"]
    return Totals(
        frames_ok=count["ok"],
        frames_failed=count["failed"],
        frames_dropped=count["dropped"],
        metres=sum(float(r[3] or 0.0) for r in ok),
        defects=defects,
        metres_by_line=tuple(sorted((int(r[1]), float(r[3] or 0.0)) for r in ok if r[1] is not None)),
        frame_size=one_size({(r[4], r[5], r[6], r[7]) for r in ok}),
    )


def one_size(ranges: set[tuple]) -> tuple[int, int] | None:
    """The frame size when every line's ``(min w, max w, min h, max h)`` is the same single size."""
    if len(ranges) != 1:
        return None
    w_lo, w_hi, h_lo, h_hi = next(iter(ranges))
    if w_lo is None or h_lo is None or w_lo != w_hi or h_lo != h_hi:
        return None
    return int(w_lo), int(h_lo)


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
