"""Trends: defect rate per class over time, and a control chart with its limits and run-rule signals."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries, spc
from dashboard.colors import class_color
from dashboard.data import PageContext, context, q
from dashboard.localtime import zone_label
from dashboard.queries.totals import one_size
from dashboard.ui import csv_button, empty_state

if TYPE_CHECKING:
    from dashboard.ui import ColumnSettings

TITLE = "Trends"
BUCKETS = {"hour": "Hour", "shift": "Shift (8 h)", "day": "Day"}
CHARTS = {
    "u_frames": "u-chart: defects per 1,000 frames",
    "u_metres": "u-chart: defects per 100 m",
    "p_frames": "p-chart: share of frames with a defect",
}
ALL_CLASSES = "All selected classes"
# Complete buckets a control chart needs before its limits and run rules mean anything. (Comments, not
# attribute docstrings, in page scripts: Streamlit's "magic" draws a floating string on the page.)
MIN_SAMPLES = 5
MAX_TICKS = 40


def frame_size(frames: pd.DataFrame) -> tuple[int, int] | None:
    """The one ``(width, height)`` of every frame in a ``queries.frame_trend`` table, or None."""
    if frames.empty:
        return None
    return one_size({tuple(r) for r in frames[list(queries.SIZE_COLUMNS)].itertuples(index=False)})


def chart_choices(frame_size: tuple[int, int] | None) -> dict[str, str]:
    """The control charts on offer: per 1,000 frames only when every frame has one stated size."""
    if frame_size is None:
        return {k: v for k, v in CHARTS.items() if k != "u_frames"}
    w, h = frame_size
    return {**CHARTS, "u_frames": f"{CHARTS['u_frames']} of {w}×{h} px"}


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
            columns=[
                "bucket_start",
                "class_name",
                "defects",
                "frames",
                "metres",
                "per_1000_frames",
                "per_100_m",
            ]
        )
    classes = sorted(defects["class_name"].unique()) if not defects.empty else []
    grid = pd.MultiIndex.from_product([frames["bucket_start"], classes], names=["bucket_start", "class_name"])
    counts = defects.set_index(["bucket_start", "class_name"])["defects"].reindex(grid, fill_value=0)
    df = counts.reset_index().merge(frames[["bucket_start", "frames", "metres"]], on="bucket_start")
    df["per_1000_frames"] = 1000.0 * df["defects"] / df["frames"]
    df["per_100_m"] = (100.0 * df["defects"] / df["metres"]).where(df["metres"] > 0)
    return df


def trend_columns(tz: tzinfo) -> ColumnSettings:
    """Human column names and units of the trend tables (the data keeps its field names for the CSV)."""
    zone = zone_label(tz)
    return {
        "bucket_start": st.column_config.DatetimeColumn(f"Bucket start ({zone})", format="ddd D MMM HH:mm"),
        "bucket_start_utc": None,
        "bucket_end_utc": None,
        "class_name": "Class",
        "defects": st.column_config.NumberColumn("Defects", format="%d"),
        "frames": st.column_config.NumberColumn("Frames", format="%d"),
        "metres": st.column_config.NumberColumn("Metres (m)", format="%.1f"),
        "per_1000_frames": st.column_config.NumberColumn("Per 1,000 frames", format="%.2f"),
        "per_100_m": st.column_config.NumberColumn("Per 100 m", format="%.2f"),
        "partial": st.column_config.CheckboxColumn("Partial bucket"),
        "value": st.column_config.NumberColumn("Value", format="%.3f"),
        "centre": st.column_config.NumberColumn("Centre line", format="%.3f"),
        "lcl": st.column_config.NumberColumn("LCL", format="%.3f"),
        "ucl": st.column_config.NumberColumn("UCL", format="%.3f"),
        "z": st.column_config.NumberColumn("z (sigmas)", format="%.2f"),
        "rules": "Rules broken",
        "signal": st.column_config.CheckboxColumn("Out of control"),
    }


def partial_buckets(
    frames: pd.DataFrame, *, start: datetime | None, end: datetime | None, now: datetime
) -> list[bool]:
    """Which buckets the time range (or the present) cuts: they hold part of a bucket's worth of frames.

    A "Last 7 days" range begins mid-shift, so its first shift may hold a single frame; the bucket still
    running now is incomplete too. Such buckets are drawn but set neither the centre line nor the rules.
    Uses each bucket's UTC start and end (``queries.frame_trend``), so clock changes are honoured.
    """
    stop = min(end, now) if end is not None else now
    return [
        (start is not None and b < start) or (e > stop)
        for b, e in zip(frames["bucket_start_utc"], frames["bucket_end_utc"], strict=True)
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
            "bucket_start_utc": frames["bucket_start_utc"],
            "bucket_end_utc": frames["bucket_end_utc"],
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


def _chart(table: pd.DataFrame, y_title: str, x: alt.X) -> alt.LayerChart | alt.FacetChart:
    base = alt.Chart(table).encode(x=x)
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


def time_axis(bucket: str, tz: tzinfo, starts: pd.Series | None = None) -> alt.X:
    """The x axis of a trend: the plant's clock, with the date on every tick (hours and shifts too).

    Shift and day ticks sit on the bucket starts (Vega would pick round hours, not 06:00/14:00/22:00);
    the times are local wall-clock values, which Vega-Lite reads as such (``alt.DateTime``, not UTC).
    """
    fmt = "%a %d %b" if bucket == "day" else "%a %d %b %H:%M"
    values = None
    if starts is not None and bucket != "hour" and 0 < starts.nunique() <= MAX_TICKS:
        values = [
            alt.DateTime(year=t.year, month=t.month, date=t.day, hours=t.hour, minutes=t.minute)
            for t in sorted(set(pd.to_datetime(starts)))
        ]
    return alt.X(
        "bucket_start:T",
        title=f"{BUCKETS[bucket].lower()} starting ({zone_label(tz)})",
        axis=alt.Axis(format=fmt, labelAngle=-30, values=values)
        if values
        else alt.Axis(format=fmt, labelAngle=-30),
    )


def _rate_chart(rates: pd.DataFrame, bucket: str, tz: tzinfo) -> None:
    st.subheader("Defects per 100 m, by class")
    if rates.empty or rates["defects"].sum() == 0:
        empty_state("No defects in these frames.")
        return
    st.altair_chart(
        alt.Chart(rates)
        .mark_line(point=True)
        .encode(
            x=time_axis(bucket, tz, rates["bucket_start"]),
            y=alt.Y("per_100_m:Q", title="defects per 100 m"),
            color=class_color(rates["class_name"]),
            tooltip=[
                alt.Tooltip("bucket_start:T", format="%a %d %b %H:%M"),
                "class_name:N",
                "defects:Q",
                "metres:Q",
                "per_100_m:Q",
                "frames:Q",
            ],
        ),  # fmt: skip
        width="stretch",
    )


def _control_section(
    ctx: PageContext, frames: pd.DataFrame, *, bucket: str, kind: str, chosen: str, title: str
) -> pd.DataFrame:
    """The control chart of the chosen class (or all): drawn, judged, and its table returned."""
    chart_frames = frames
    if chosen != ALL_CLASSES:
        chart_frames = q(
            ctx, queries.frame_trend, ctx.filters.with_(classes=(chosen,)), bucket=bucket,
            shift_start_hour=ctx.config.shift_start_hour, tz=ctx.config.plant_timezone,
        )  # fmt: skip
    partial = partial_buckets(
        chart_frames, start=ctx.filters.start, end=ctx.filters.end, now=datetime.now(UTC)
    )
    _, table = control_chart(chart_frames, kind, partial=partial)
    st.subheader(title + ("" if chosen == ALL_CLASSES else f" ({chosen})"))
    y_title = {"p_frames": "% frames with a defect", "u_metres": "defects per 100 m"}.get(
        kind, "defects per 1,000 frames"
    )
    st.altair_chart(_chart(table, y_title, time_axis(bucket, ctx.tz, table["bucket_start"])), width="stretch")
    _chart_verdict(table)
    return table


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    c1, c2, c3 = st.columns(3)
    bucket = c1.selectbox(
        "Bucket",
        list(BUCKETS),
        format_func=BUCKETS.__getitem__,
        key="trend_bucket",
        index=default_bucket(ctx),
    )
    where = {
        "bucket": bucket,
        "shift_start_hour": ctx.config.shift_start_hour,
        "tz": ctx.config.plant_timezone,
    }
    frames = q(ctx, queries.frame_trend, ctx.filters, **where)
    charts = chart_choices(frame_size(frames))
    kind = c2.selectbox("Control chart", list(charts), format_func=charts.__getitem__, key="trend_chart")
    classes = list(ctx.filters.classes or ctx.options.classes)
    chosen = c3.selectbox("Class for the control chart", [ALL_CLASSES, *classes], key="trend_class")
    if frames.empty:
        empty_state("No inspected frames for these filters: nothing to chart.")
        return
    st.caption(
        f"Times are the plant's clock ({zone_label(ctx.tz)}); shifts are 8 h from "
        f"{ctx.config.shift_start_hour:02d}:00."
    )
    rates = rate_table(q(ctx, queries.defect_trend, ctx.filters, **where), frames)
    _rate_chart(rates, bucket, ctx.tz)
    table = _control_section(ctx, frames, bucket=bucket, kind=kind, chosen=chosen, title=charts[kind])
    if "u_frames" not in charts:  # frames of different sizes: a per-frame rate compares unlike units
        rates = rates.drop(columns=["per_1000_frames"])

    st.subheader("Data")
    st.dataframe(rates, hide_index=True, key="trend_table", column_config=trend_columns(ctx.tz))
    csv_button(rates, f"defect-trend-{bucket}.csv", key="trend_csv")
    st.dataframe(table, hide_index=True, key="trend_chart_table", column_config=trend_columns(ctx.tz))
    csv_button(table, f"control-chart-{kind}-{bucket}.csv", key="trend_chart_csv", label="Download chart CSV")


if __name__ == "__main__":
    render(context())
