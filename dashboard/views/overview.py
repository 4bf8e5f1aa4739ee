"""Overview: how much was inspected, how many defects of which class, and the change on the period before."""

from __future__ import annotations

from datetime import UTC, tzinfo

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.data import PageContext, context, q
from dashboard.filters import Filters
from dashboard.localtime import fmt_time, zone_label
from dashboard.ui import csv_button, delta, empty_state, fmt_float, fmt_int

TITLE = "Overview"


def range_caption(f: Filters, tz: tzinfo = UTC) -> str:
    """Human description of the filter's time range, on the plant's clock."""
    if f.start is None and f.end is None:
        return f"All time (times in {zone_label(tz)})"
    start = fmt_time(f.start, tz) or "the beginning"
    end = fmt_time(f.end, tz) or "now"
    return f"From {start} to {end}"


def class_table(current: pd.DataFrame, previous: pd.DataFrame | None, totals: queries.Totals) -> pd.DataFrame:
    """Per-class counts, share, rates and the change against the previous period."""
    df = current.copy()
    total = int(df["defects"].sum())
    df["share_pct"] = 100.0 * df["defects"] / total if total else 0.0
    df["per_1000_frames"] = 1000.0 * df["defects"] / totals.frames_ok if totals.frames_ok else float("nan")
    df["per_100_m"] = 100.0 * df["defects"] / totals.metres if totals.metres > 0 else float("nan")
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


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    f = ctx.filters
    previous_f = f.previous_period()
    st.caption(range_caption(f, ctx.tz) + (" · compared with the period before" if previous_f else ""))
    now = q(ctx, queries.totals, f)
    before = q(ctx, queries.totals, previous_f) if previous_f else None

    cols = st.columns(5)
    cols[0].metric(
        "Frames inspected", fmt_int(now.frames_ok), delta(now.frames_ok, before and before.frames_ok),
        delta_color="off",
    )  # fmt: skip
    cols[1].metric(
        "Metres inspected", fmt_float(now.metres, 1, " m"), delta(now.metres, before and before.metres),
        delta_color="off",
    )  # fmt: skip
    cols[2].metric(
        "Defects", fmt_int(now.defects), delta(now.defects, before and before.defects), delta_color="inverse"
    )
    cols[3].metric(
        "Defects per 1,000 frames",
        fmt_float(now.per_1000_frames),
        delta(now.per_1000_frames, before and before.per_1000_frames),
        delta_color="inverse",
    )
    cols[4].metric(
        "Defects per 100 m",
        fmt_float(now.per_100_m),
        delta(now.per_100_m, before and before.per_100_m),
        delta_color="inverse",
    )
    if now.frames_failed or now.frames_dropped:
        st.warning(
            f"{fmt_int(now.frames_failed)} frame(s) failed and {fmt_int(now.frames_dropped)} were dropped "
            "in this range: they are not counted as inspected."
        )
    if now.frames_ok == 0 and now.defects == 0:
        empty_state("No inspected frames and no defects for these filters. Widen the time range or filters.")
        return

    by_class = q(ctx, queries.defects_by_class, f)
    previous = q(ctx, queries.defects_by_class, previous_f) if previous_f else None
    if by_class.empty and (previous is None or previous.empty):
        empty_state("No defects for these filters: the inspected strip was clean.")
        return
    table = class_table(by_class, previous, now)
    st.subheader("Defects per class")
    st.bar_chart(table, x="class_name", y="defects", x_label="class", y_label="defects", horizontal=True)
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "class_name": "Class",
            "defects": st.column_config.NumberColumn("Defects", format="%d"),
            "share_pct": st.column_config.NumberColumn("Share %", format="%.1f"),
            "per_1000_frames": st.column_config.NumberColumn("Per 1,000 frames", format="%.2f"),
            "per_100_m": st.column_config.NumberColumn("Per 100 m", format="%.2f"),
            "previous_period": st.column_config.NumberColumn("Previous period", format="%d"),
            "change_pct": st.column_config.NumberColumn("Change %", format="%+.1f"),
        },
        key="overview_table",
    )
    csv_button(table, "defects-per-class.csv", key="overview_csv")


if __name__ == "__main__":
    render(context())
