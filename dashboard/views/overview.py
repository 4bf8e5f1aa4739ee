"""Overview: how much was inspected, how many defects of which class, and the change on the period before."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.colors import class_color
from dashboard.data import PageContext, context, grade_pending_coils, q
from dashboard.filters import Filters
from dashboard.localtime import fmt_time, local_columns, recent_shifts, zone_label
from dashboard.report_data import shift_report
from dashboard.ui import csv_button, delta, empty_state, fmt_float, fmt_int, table_columns

TITLE = "Overview"
MAX_COILS = 5000
COIL_NAMES = {
    "coil_id": "Coil id", "line": "Line", "code": "Coil", "started_at": "Started at", "ended_at": "Ended at",
    "length_m": "Length (m)", "frames": "Frames", "metres": "Metres inspected (m)", "defects": "Defects",
    "grade": "Grade", "grade_reasons": "Why", "graded_at": "Graded at",
}  # fmt: skip


def range_caption(f: Filters, tz: tzinfo = UTC) -> str:
    """Human description of the filter's time range, on the plant's clock."""
    if f.start is None and f.end is None:
        return f"All time (times in {zone_label(tz)})"
    start = fmt_time(f.start, tz) or "the beginning"
    end = fmt_time(f.end, tz) or "now"
    return f"From {start} to {end}"


def per_line_widths(ctx: PageContext) -> bool:
    """Whether strip widths differ by line (then the totals must give metres per line)."""
    return bool(set(ctx.config.strip_width_m) - {"*"})


def inspected_area_m2(totals: queries.Totals, ctx: PageContext) -> float | None:
    """Strip area inspected: metres times the strip width (per line when widths differ by line); None
    when a width is unknown."""
    if not per_line_widths(ctx):
        width = ctx.config.strip_width_m.get("*")
        return totals.metres * width if width and totals.metres > 0 else None
    names = dict(ctx.options.lines)
    area = 0.0
    for line_id, metres in totals.metres_by_line:
        width = ctx.config.strip_width_of(names.get(line_id, ""))
        if width is None:
            return None
        area += metres * width
    return area if area > 0 else None


def class_table(
    current: pd.DataFrame,
    previous: pd.DataFrame | None,
    totals: queries.Totals,
    area_m2: float | None = None,
    n_coils: int = 0,
) -> pd.DataFrame:
    """Per-class counts, share, rates (per 100 m, per m², per coil, per 1,000 frames of a fixed size) and
    the change against the previous period. A rate whose units are unknown is left out."""
    df = current.copy()
    total = int(df["defects"].sum())
    df["share_pct"] = 100.0 * df["defects"] / total if total else 0.0
    df["per_100_m"] = 100.0 * df["defects"] / totals.metres if totals.metres > 0 else float("nan")
    if area_m2:
        df["per_m2"] = df["defects"] / area_m2
    if n_coils:
        df["per_coil"] = df["defects"] / n_coils
    if totals.frame_size is not None and totals.frames_ok:
        df["per_1000_frames"] = 1000.0 * df["defects"] / totals.frames_ok
    if previous is not None:
        prev = previous.set_index("class_name")["defects"]
        df["previous_period"] = df["class_name"].map(prev).fillna(0).astype("int64")
        missing = prev[~prev.index.isin(df["class_name"])]
        if len(missing):  # classes seen before but not now: show them with zero
            extra = pd.DataFrame(
                {"class_name": missing.index, "defects": 0, "previous_period": missing.values}
            )
            df = pd.concat([df, extra], ignore_index=True)
        df["change_pct"] = [
            (100.0 * (c - p) / p) if p else float("nan")
            for c, p in zip(df["defects"], df["previous_period"], strict=True)
        ]
    return df


def _rate_metrics(
    now: queries.Totals,
    before: queries.Totals | None,
    *,
    area: float | None,
    area_before: float | None,
    n_coils: int,
) -> None:
    """Counts and the rates people compare; a rate with unknown units says why instead of a number."""
    row1, row2 = st.columns(4), st.columns(4)
    row1[0].metric(
        "Frames inspected", fmt_int(now.frames_ok),
        delta(now.frames_ok, None if before is None else before.frames_ok), delta_color="off",
    )  # fmt: skip
    row1[1].metric(
        "Metres inspected", fmt_float(now.metres, 1, " m"),
        delta(now.metres, None if before is None else before.metres), delta_color="off",
    )  # fmt: skip
    row1[2].metric("Coils", fmt_int(n_coils))
    row1[3].metric(
        "Defects", fmt_int(now.defects),
        delta(now.defects, None if before is None else before.defects), delta_color="inverse",
    )  # fmt: skip
    per_m2 = now.defects / area if area else None
    per_m2_before = before.defects / area_before if before is not None and area_before else None
    rates = [
        ("Defects per 100 m", now.per_100_m, None if before is None else before.per_100_m, None),
        ("Defects per m²", per_m2, per_m2_before, None if area else "Set strip_width_m in the config."),
        ("Defects per coil", now.defects / n_coils if n_coils else None, None, None),
    ]
    if now.frame_size is not None:
        w, h = now.frame_size
        rates.append(
            (
                f"Defects per 1,000 frames ({w}×{h} px)",
                now.per_1000_frames,
                None if before is None else before.per_1000_frames,
                None,
            )
        )
    else:
        rates.append(
            (
                "Defects per 1,000 frames",
                None,
                None,
                "Frames differ in size: a per-frame rate compares unlike units.",
            )
        )
    for col, (label, value, previous, why) in zip(row2, rates, strict=True):
        col.metric(
            label,
            fmt_float(value, 3 if "m²" in label else 2),
            delta(value, previous),
            delta_color="inverse",
            help=why,
        )


def _grades(ctx: PageContext, coils: pd.DataFrame) -> None:
    """How the coils inspected in the range (``queries.list_coils``) were graded, and the graded coils
    (exported as CSV): counted here, not by a second pass over the frames."""
    if coils.empty:
        return
    st.subheader("Coil grades")
    grades = list(ctx.config.grading_rules.grades)
    counts = coils["grade"].value_counts()
    cols = st.columns(len(grades) + 1)
    for col, grade in zip(cols, grades, strict=False):
        col.metric(f"Grade {grade}", fmt_int(int(counts.get(grade, 0))))
    cols[-1].metric("Not graded (open)", fmt_int(int(coils["grade"].isna().sum())))
    if len(coils) == MAX_COILS:
        st.caption(f"Counts over the latest {MAX_COILS:,} coils of the range.")
    graded = coils[coils["grade"].notna()].copy()
    if graded.empty:
        st.caption("No coil in this range is closed and graded yet.")
        return
    graded["grade_reasons"] = ["; ".join(r or []) for r in graded["grade_reasons"]]
    graded["length_m"] = [f"{v:,.1f}" if pd.notna(v) else "not recorded" for v in graded["length_m"]]
    table = local_columns(graded, ctx.tz, ("started_at", "ended_at", "graded_at"))
    st.dataframe(
        table, hide_index=True, key="overview_grades", column_config=table_columns(COIL_NAMES, ctx.tz)
    )
    csv_button(table, "coil-grades.csv", key="overview_grades_csv", label="Download coil grades (CSV)")


def _shift_report(ctx: PageContext) -> None:
    """Pick a shift of the range (latest first) and download its printable report."""
    first = ctx.filters.start or ctx.options.first_at
    last = min(ctx.filters.end or datetime.now(UTC), ctx.options.last_at or datetime.now(UTC))
    if first is None:
        return
    shifts = recent_shifts(first, last, ctx.tz, ctx.config.shift_start_hour)
    if not shifts:
        return
    with st.expander("Shift report"):
        k = st.selectbox(
            f"Shift ({zone_label(ctx.tz)})",
            list(range(len(shifts))),
            format_func=lambda i: f"{shifts[i][0]:%a %d %b %Y, %H:%M}",
            key="shift_pick",
        )
        wall, start, end = shifts[k]
        st.download_button(
            "Shift report (HTML, prints to PDF)",
            lambda: shift_report(ctx, start, end).encode("utf-8"),
            file_name=f"shift-{wall:%Y%m%d-%H%M}.html",
            mime="text/html",
            key="shift_report",
            on_click="ignore",
        )


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    f = ctx.filters
    previous_f = f.previous_period()
    st.caption(range_caption(f, ctx.tz) + (" · compared with the period before" if previous_f else ""))
    by_line = per_line_widths(ctx)
    now = q(ctx, queries.totals, f, by_line=by_line)
    before = q(ctx, queries.totals, previous_f, by_line=by_line) if previous_f else None
    area = inspected_area_m2(now, ctx)
    grade_pending_coils(ctx)
    coils = q(ctx, queries.list_coils, f, limit=MAX_COILS)
    area_before = inspected_area_m2(before, ctx) if before else None
    _rate_metrics(now, before, area=area, area_before=area_before, n_coils=len(coils))
    if now.frames_failed or now.frames_dropped:
        st.warning(
            f"{fmt_int(now.frames_failed)} frame(s) failed and {fmt_int(now.frames_dropped)} were dropped "
            "in this range: they are not counted as inspected."
        )
    if now.frames_ok == 0 and now.defects == 0:
        empty_state("No inspected frames and no defects for these filters. Widen the time range or filters.")
        return
    _grades(ctx, coils)
    _shift_report(ctx)
    by_class = q(ctx, queries.defects_by_class, f)
    previous = q(ctx, queries.defects_by_class, previous_f) if previous_f else None
    if by_class.empty and (previous is None or previous.empty):
        empty_state("No defects for these filters: the inspected strip was clean.")
        return
    table = class_table(by_class, previous, now, area, n_coils=len(coils))
    st.subheader("Defects per class")
    st.altair_chart(class_bars(table), width="stretch")
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "class_name": "Class",
            "defects": st.column_config.NumberColumn("Defects", format="%d"),
            "share_pct": st.column_config.NumberColumn("Share %", format="%.1f"),
            "per_100_m": st.column_config.NumberColumn("Per 100 m", format="%.2f"),
            "per_m2": st.column_config.NumberColumn("Per m²", format="%.4f"),
            "per_coil": st.column_config.NumberColumn("Per coil", format="%.2f"),
            "per_1000_frames": st.column_config.NumberColumn("Per 1,000 frames", format="%.2f"),
            "previous_period": st.column_config.NumberColumn("Previous period", format="%d"),
            "change_pct": st.column_config.NumberColumn("Change %", format="%+.1f"),
        },
        key="overview_table",
    )
    csv_button(table, "defects-per-class.csv", key="overview_csv")


def class_bars(table: pd.DataFrame) -> alt.Chart:
    """Horizontal bars of defects per class, most frequent on top, each class in its colour."""
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            y=alt.Y("class_name:N", sort="-x", title="Class"),
            x=alt.X("defects:Q", title="Defects"),
            color=class_color(table["class_name"]),
            tooltip=["class_name:N", "defects:Q", alt.Tooltip("share_pct:Q", format=".1f")],
        )
    )


if __name__ == "__main__":
    render(context())
