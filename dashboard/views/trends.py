"""Trends: defect rate per class over time, and a control chart with its limits and run-rule signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries, spc
from dashboard.data import PageContext, context, q
from dashboard.ui import csv_button, empty_state

TITLE = "Trends"
BUCKETS = {"hour": "Hour", "shift": "Shift (8 h)", "day": "Day"}
CHARTS = {
    "u_frames": "u-chart: defects per 1,000 frames",
    "u_metres": "u-chart: defects per 100 m",
    "p_frames": "p-chart: share of frames with a defect",
}
ALL_CLASSES = "All selected classes"
MIN_SAMPLES = 5
"""Complete buckets a control chart needs before its limits and run rules mean anything."""


def default_bucket(ctx: PageContext) -> int:
    """Index in ``BUCKETS`` that gives a readable chart for the range: hours up to 3 days, shifts up to
    3 weeks, days beyond (a month of hours is 720 points)."""
    f, o = ctx.filters, ctx.options
    start = f.start or o.first_at
    end = f.end or o.last_at
    if start is None or end is None:
        return 0
    days = (end - start).total_seconds() / 86400
    return 0 if days <= 3 else 1 if days <= 21 else 2


def rate_table(defects: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Per bucket and class: ``defects``, ``frames``, ``metres`` and ``per_1000_frames``; zero-filled."""
    if frames.empty:
        return pd.DataFrame(
            columns=["bucket_start", "class_name", "defects", "frames", "metres", "per_1000_frames"]
        )
    classes = sorted(defects["class_name"].unique()) if not defects.empty else []
    grid = pd.MultiIndex.from_product([frames["bucket_start"], classes], names=["bucket_start", "class_name"])
    counts = defects.set_index(["bucket_start", "class_name"])["defects"].reindex(grid, fill_value=0)
    df = counts.reset_index().merge(frames[["bucket_start", "frames", "metres"]], on="bucket_start")
    df["per_1000_frames"] = 1000.0 * df["defects"] / df["frames"]
    return df


def partial_buckets(
    starts: pd.Series, *, size: timedelta, start: datetime | None, end: datetime | None, now: datetime
) -> list[bool]:
    """Which buckets the time range (or the present) cuts: they hold part of a bucket's worth of frames.

    A "Last 7 days" range begins mid-shift, so its first shift may hold a single frame; the bucket still
    running now is incomplete too. Such buckets are drawn but set neither the centre line nor the rules.
    """
    stop = min(end, now) if end is not None else now
    return [
        (start is not None and b < start) or (b + size > stop)
        for b in pd.to_datetime(starts, utc=True).dt.to_pydatetime()
    ]


def control_chart(
    frames: pd.DataFrame, kind: str, *, partial: list[bool] | None = None
) -> tuple[spc.ControlChart, pd.DataFrame]:
    """The chart of ``kind`` (a key of ``CHARTS``) over ``queries.frame_trend`` rows, and its table.

    ``partial`` flags buckets cut by the range: plotted, but outside the centre line and the rules.
    """
    partial = partial if partial is not None else [False] * len(frames)
    baseline = [not p for p in partial]
    if kind == "p_frames":
        chart = spc.p_chart(
            frames["frames_with_defects"].tolist(), frames["frames"].tolist(), baseline=baseline
        )
        scale = 100.0  # shown in percent
    elif kind == "u_metres":
        chart = spc.u_chart(
            frames["defects"].tolist(), (frames["metres"] / 100.0).tolist(), baseline=baseline
        )
        scale = 1.0
    else:
        chart = spc.u_chart(
            frames["defects"].tolist(), (frames["frames"] / 1000.0).tolist(), baseline=baseline
        )
        scale = 1.0
    table = pd.DataFrame(
        {
            "bucket_start": frames["bucket_start"],
            "partial": partial,
            "value": [v * scale for v in chart.values],
            "centre": chart.centre * scale,
            "lcl": [v * scale for v in chart.lcl],
            "ucl": [v * scale for v in chart.ucl],
            "z": chart.z,
            "rules": [", ".join(str(r) for r in rules) for rules in chart.violations],
        }
    )
    table["signal"] = table["rules"] != ""
    return chart, table


def _chart(table: pd.DataFrame, y_title: str) -> alt.LayerChart:
    base = alt.Chart(table).encode(x=alt.X("bucket_start:T", title="time (UTC)"))
    value = base.mark_line(point=alt.OverlayMarkDef(filled=True)).encode(
        y=alt.Y("value:Q", title=y_title),
        tooltip=["bucket_start:T", "value:Q", "ucl:Q", "lcl:Q", "partial:N", "rules:N"],
    )
    cut = (
        base.transform_filter(alt.datum.partial)
        .mark_point(color="#7f7f7f", size=90, filled=False, strokeWidth=2)
        .encode(y="value:Q", tooltip=["bucket_start:T", "value:Q", "partial:N"])
    )
    limits = base.mark_line(interpolate="step", strokeDash=[5, 4], color="#d62728").encode(y="ucl:Q")
    lower = base.mark_line(interpolate="step", strokeDash=[5, 4], color="#d62728").encode(y="lcl:Q")
    centre = base.mark_line(color="#2ca02c").encode(y="centre:Q")
    signals = (
        base.transform_filter(alt.datum.signal)
        .mark_point(color="#d62728", size=140, filled=True)
        .encode(y="value:Q", tooltip=["bucket_start:T", "value:Q", "rules:N"])
    )
    return alt.layer(limits, lower, centre, value, cut, signals)


def _chart_verdict(table: pd.DataFrame) -> None:
    """What the chart says: too few points to judge, out-of-control points, or in control."""
    n_partial = int(table["partial"].sum())
    if n_partial:
        st.caption(
            f"{n_partial} partial bucket(s), cut by the time range or still running, are drawn hollow "
            "and left out of the centre line, the limits and the run rules."
        )
    n_complete = int((~table["partial"] & table["value"].notna()).sum())
    if n_complete < MIN_SAMPLES:
        st.info(
            f"Too few points to judge: {n_complete} complete bucket(s), a control chart needs at least "
            f"{MIN_SAMPLES}. Choose a smaller bucket or a longer range.",
            icon=":material/info:",
        )
        return
    n_signals = int(table["signal"].sum())
    if n_signals:
        st.error(f"{n_signals} point(s) out of control (Western Electric rules).", icon=":material/warning:")
        legend = "; ".join(f"{k}: {v}" for k, v in spc.RULES.items())
        st.caption(f"Rules: {legend}.")
        st.dataframe(
            table.loc[table["signal"], ["bucket_start", "value", "z", "rules"]],
            hide_index=True,
            key="trend_signals",
        )
    else:
        st.success(
            f"All {n_complete} complete points within the limits; no run-rule signal.",
            icon=":material/check:",
        )


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    c1, c2, c3 = st.columns(3)
    bucket = c1.selectbox(
        "Bucket", list(BUCKETS), format_func=BUCKETS.get, key="trend_bucket", index=default_bucket(ctx)
    )
    kind = c2.selectbox("Control chart", list(CHARTS), format_func=CHARTS.get, key="trend_chart")
    classes = list(ctx.filters.classes or ctx.options.classes)
    chosen = c3.selectbox("Class for the control chart", [ALL_CLASSES, *classes], key="trend_class")
    shift = ctx.config.shift_start_hour

    frames = q(ctx, queries.frame_trend, ctx.filters, bucket=bucket, shift_start_hour=shift)
    if frames.empty:
        empty_state("No inspected frames for these filters: nothing to chart.")
        return
    defects = q(ctx, queries.defect_trend, ctx.filters, bucket=bucket, shift_start_hour=shift)
    rates = rate_table(defects, frames)

    st.subheader("Defects per 1,000 frames, by class")
    if rates.empty or rates["defects"].sum() == 0:
        empty_state("No defects in these frames.")
    else:
        st.altair_chart(
            alt.Chart(rates)
            .mark_line(point=True)
            .encode(
                x=alt.X("bucket_start:T", title="time (UTC)"),
                y=alt.Y("per_1000_frames:Q", title="defects per 1,000 frames"),
                color=alt.Color("class_name:N", title="class", scale=alt.Scale(scheme="category10")),
                tooltip=["bucket_start:T", "class_name:N", "defects:Q", "frames:Q", "per_1000_frames:Q"],
            ),
            width="stretch",
        )

    chart_filters = ctx.filters if chosen == ALL_CLASSES else ctx.filters.with_(classes=(chosen,))
    chart_frames = (
        frames
        if chosen == ALL_CLASSES
        else q(ctx, queries.frame_trend, chart_filters, bucket=bucket, shift_start_hour=shift)
    )
    size, _ = queries.bucket_params(bucket, shift_start_hour=shift)
    partial = partial_buckets(
        chart_frames["bucket_start"],
        size=timedelta(seconds=size),
        start=ctx.filters.start,
        end=ctx.filters.end,
        now=datetime.now(UTC),
    )
    chart, table = control_chart(chart_frames, kind, partial=partial)
    st.subheader(CHARTS[kind] + ("" if chosen == ALL_CLASSES else f" ({chosen})"))
    y_title = {"p_frames": "% frames with a defect", "u_metres": "defects per 100 m"}.get(
        kind, "defects per 1,000 frames"
    )
    st.altair_chart(_chart(table, y_title), width="stretch")
    _chart_verdict(table)

    st.subheader("Data")
    st.dataframe(rates, hide_index=True, key="trend_table")
    csv_button(rates, f"defect-trend-{bucket}.csv", key="trend_csv")
    st.dataframe(table, hide_index=True, key="trend_chart_table")
    csv_button(table, f"control-chart-{kind}-{bucket}.csv", key="trend_chart_csv", label="Download chart CSV")


if __name__ == "__main__":
    render(context())
