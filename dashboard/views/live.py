"""Live: the latest annotated frame of every line and its last minutes, refreshed on its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.data import PageContext, context, live_image, media_path, query_engine
from dashboard.images import load_rgb
from dashboard.localtime import fmt_time, local_columns
from dashboard.ui import empty_state, fmt_float, fmt_int, table_columns

TITLE = "Live"
WINDOW = timedelta(minutes=5)
GAP_WINDOW = timedelta(hours=24)
GAP_NAMES = {
    "source": "Source", "line": "Line", "started_at": "Started at", "ended_at": "Ended at",
    "seconds": "Length (s)", "reason": "Reason", "missing_lines": "Camera lines lost",
}  # fmt: skip


def age_text(when: datetime | None, now: datetime) -> str:
    """``"12 s ago"``, ``"3 min ago"``, ``"2.5 h ago"`` or ``"never"``."""
    if when is None:
        return "never"
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def silence_warning(last_frame_at: datetime | None, now: datetime, silent_after: timedelta) -> str | None:
    """Why a line looks silent (no frame for longer than ``silent_after``), or None while it delivers."""
    if last_frame_at is None or pd.isna(last_frame_at):
        return "Silent: this line has never sent a frame."
    if now - last_frame_at <= silent_after:
        return None
    return (
        f"Silent: no frame for {age_text(last_frame_at, now).removesuffix(' ago')} "
        f"(more than {silent_after.total_seconds():g} s). Check the camera, the encoder and the daemon."
    )


def gaps_caption(n_silent: int, silent_after: timedelta) -> str:
    """The gap section's text when the daemon recorded no gap: only "no gaps" when no line is silent."""
    if n_silent:
        return (
            f"No gap recorded by the daemon, but {n_silent} line(s) above have sent nothing for more than "
            f"{silent_after.total_seconds():g} s: a silent source is not a delivering one."
        )
    return f"No gap recorded, and every line sent a frame within the last {silent_after.total_seconds():g} s."


def box_caption(row: dict, boxes: pd.DataFrame, when: str) -> str:
    """The kept frame's caption: how many boxes are drawn, which are new and which are carried over."""
    carried = boxes[boxes["carried_over"]]
    new = len(boxes) - len(carried)
    text = f"{row['source']} #{row['seq']} · {len(boxes)} box(es) drawn: {new} new defect(s)"
    if len(carried):
        ids = ", ".join(f"#{int(i)} {c}" for i, c in zip(carried["id"], carried["class_name"], strict=True))
        text += f", {len(carried)} carried over from the overlapping earlier frame(s) ({ids})"
    return f"{text} · {when}"


def live_panel(ctx: PageContext) -> None:
    """One refresh: queried directly (no cache), since this page is about the last seconds."""
    engine = query_engine(ctx.config)
    now = datetime.now(UTC)
    lines = queries.latest_frames(engine, line_ids=ctx.filters.line_ids)
    if lines.empty:
        empty_state("No line has sent a frame yet.")
        return
    stats = queries.live_stats(engine, since=now - WINDOW, line_ids=ctx.filters.line_ids).set_index("line_id")
    st.caption(
        f"Updated {fmt_time(now, ctx.tz, '%H:%M:%S')} · every {ctx.config.refresh_s:g} s · "
        "counts over the last 5 minutes"
    )
    silent_after = timedelta(seconds=ctx.config.live_silent_after_s)
    n_silent = 0
    for row in lines.to_dict("records"):
        st.subheader(str(row["line"]))
        if warning := silence_warning(row["last_frame_at"], now, silent_after):
            st.warning(warning, icon=":material/signal_disconnected:")
            n_silent += 1
        s = stats.loc[row["line_id"]] if row["line_id"] in stats.index else None
        cols = st.columns(5)
        cols[0].metric("Last frame", age_text(row["last_frame_at"], now))
        cols[1].metric("Frames (5 min)", fmt_int(s["frames"] if s is not None else 0))
        cols[2].metric("Defects (5 min)", fmt_int(s["defects"] if s is not None else 0))
        cols[3].metric("Failed + dropped", fmt_int((s["failed"] + s["dropped"]) if s is not None else 0))
        latency = (
            float(s["mean_latency_ms"])
            if s is not None and s["mean_latency_ms"] == s["mean_latency_ms"]
            else None
        )
        cols[4].metric("Mean latency", fmt_float(latency, 0, " ms"))
        _line_image(ctx, row, now)
    gaps = queries.recent_gaps(engine, since=now - GAP_WINDOW, line_ids=ctx.filters.line_ids)
    st.subheader("Input gaps (last 24 h)")
    if gaps.empty:
        st.caption(gaps_caption(n_silent, silent_after))
    else:
        st.dataframe(
            local_columns(gaps, ctx.tz, ("started_at", "ended_at")),
            hide_index=True,
            key="live_gaps",
            column_config=table_columns(GAP_NAMES, ctx.tz),
        )


def _line_image(ctx: PageContext, row: dict, now: datetime) -> None:
    """The daemon's live image of the line when it is newer than the latest kept frame, else that frame."""
    kept_at = row["processed_at"] if pd.notna(row["processed_at"]) else None
    live = live_image(ctx, str(row["line"]), row["image_path"] if pd.notna(row["image_path"]) else None)
    live_at = datetime.fromtimestamp(live.stat().st_mtime, UTC) if live is not None else None
    if live is not None and (kept_at is None or live_at >= kept_at):
        image = load_rgb(live)
        caption = f"live image · written {age_text(live_at, now)}"
    else:
        image = load_rgb(media_path(ctx, row["image_path"]))
        caption = ""
        if image is not None:
            boxes = queries.frame_boxes(query_engine(ctx.config), int(row["frame_id"]))
            caption = box_caption(
                row, boxes, fmt_time(row["processed_at"], ctx.tz, "%Y-%m-%d %H:%M:%S") or ""
            )
    if image is not None:
        st.image(image, caption=caption, width="stretch")
    else:
        st.caption("No annotated frame of this line on disk yet.")


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    st.fragment(run_every=ctx.config.refresh_s)(live_panel)(ctx)


if __name__ == "__main__":
    render(context())
