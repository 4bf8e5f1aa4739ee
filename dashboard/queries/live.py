"""The latest frame of each line, its boxes, the last minutes' counts and input gaps (Live page)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import (
    and_,
    case,
    func,
    or_,
    select,
)

from dashboard.filters import Filters
from dashboard.queries.base import (
    Bind,
    aware,
    connect,
    frame_conditions,
    to_frame,
)
from inspection.storage.schema import Defect, Frame, Gap, Line

LIVE_COLUMNS = [
    "line_id", "line", "frame_id", "source", "seq", "processed_at", "status", "n_defects", "image_path",
    "latency_ms", "last_frame_at",
]  # fmt: skip


def latest_frames(bind: Bind, *, line_ids: Sequence[int] = (), recent: int = 2000) -> pd.DataFrame:
    """Per line, the latest frame kept as an annotated image, and when the line's latest frame came.

    ``LIVE_COLUMNS``; ``frame_id`` and the frame columns are null for a line whose ``recent`` latest
    frames kept no image. Looking only that far back (on the ``(line_id, processed_at)`` index) bounds the
    cost when the daemon keeps images rarely; the page is about now, not last month.
    """
    columns = (
        Frame.id, Frame.source, Frame.seq, Frame.processed_at, Frame.status, Frame.n_defects,
        Frame.image_path, Frame.latency_ms,
    )  # fmt: skip
    rows = []
    with connect(bind) as conn:
        lines = select(Line.id, Line.name).order_by(Line.name)
        if line_ids:
            lines = lines.where(Line.id.in_(line_ids))
        for line_id, name in conn.execute(lines).all():
            last_at = conn.scalar(select(func.max(Frame.processed_at)).where(Frame.line_id == line_id))
            window = (
                select(*columns)
                .where(Frame.line_id == line_id)
                .order_by(Frame.processed_at.desc(), Frame.id.desc())
                .limit(recent)
                .subquery()
            )
            kept = conn.execute(
                select(window)
                .where(window.c.image_path.is_not(None))
                .order_by(window.c.processed_at.desc(), window.c.id.desc())
                .limit(1)
            ).first()
            rows.append((line_id, name, *(tuple(kept) if kept else (None,) * len(columns)), aware(last_at)))
    return pd.DataFrame(rows, columns=LIVE_COLUMNS)


FRAME_BOX_COLUMNS = ["id", "class_name", "score", "carried_over"]


def frame_boxes(bind: Bind, frame_id: int, *, lookback_frames: int = 200) -> pd.DataFrame:
    """The defects drawn on a frame's annotated image (``FRAME_BOX_COLUMNS``), new ones first.

    The daemon draws every detection of the frame, but stores a defect once, with the first frame that
    saw it; a later overlapping frame that sees it again only moves its ``last_frame_seq`` on. So the
    boxes on frame ``seq`` are the defects stored with it plus those of earlier frames of the same source
    whose ``last_frame_seq`` reaches ``seq`` (``carried_over``). Only the ``lookback_frames`` frames
    before it are searched (on the ``(source, seq)`` index): a track spans a few overlapping frames.
    """
    with connect(bind) as conn:
        found = conn.execute(select(Frame.source, Frame.seq).where(Frame.id == frame_id)).first()
        if found is None:
            return pd.DataFrame(columns=FRAME_BOX_COLUMNS)
        source, seq = found
        earlier = select(Frame.id).where(
            Frame.source == source, Frame.seq < seq, Frame.seq >= seq - lookback_frames
        )
        carried = and_(Defect.frame_id.in_(earlier), Defect.last_frame_seq >= seq)
        stmt = (
            select(Defect.id, Defect.class_name, Defect.score, Defect.frame_id != frame_id)
            .where(or_(Defect.frame_id == frame_id, carried))
            .order_by(Defect.frame_id != frame_id, Defect.id)
        )
        df = to_frame(conn, stmt, FRAME_BOX_COLUMNS)
    return df.astype({"carried_over": bool})


LIVE_STAT_COLUMNS = ["line_id", "frames", "failed", "dropped", "defects", "mean_latency_ms"]


def live_stats(bind: Bind, *, since: datetime, line_ids: Sequence[int] = ()) -> pd.DataFrame:
    """Per line, frames by status, defects and mean latency since ``since`` (``LIVE_STAT_COLUMNS``)."""
    f = Filters(start=since, line_ids=tuple(line_ids))
    stmt = (
        select(
            Frame.line_id,
            func.sum(case((Frame.status == "ok", 1), else_=0)),
            func.sum(case((Frame.status == "failed", 1), else_=0)),
            func.sum(case((Frame.status == "dropped", 1), else_=0)),
            func.sum(Frame.n_defects),
            func.avg(Frame.latency_ms),
        )
        .where(*frame_conditions(f))
        .group_by(Frame.line_id)
    )
    with connect(bind) as conn:
        df = to_frame(conn, stmt, LIVE_STAT_COLUMNS)
    for col in ("frames", "failed", "dropped", "defects"):
        df[col] = df[col].fillna(0).astype("int64")
    return df


GAP_COLUMNS = ["source", "line", "started_at", "ended_at", "seconds", "reason", "missing_lines"]


def recent_gaps(
    bind: Bind, *, since: datetime, line_ids: Sequence[int] = (), limit: int = 200
) -> pd.DataFrame:
    """Input gaps (camera disconnects, encoder jumps) that ended after ``since``, newest first."""
    stmt = (
        select(Gap.source, Line.name, Gap.started_at, Gap.ended_at, Gap.reason, Gap.missing_lines)
        .outerjoin(Line, Line.id == Gap.line_id)
        .where(Gap.ended_at >= since)
        .order_by(Gap.started_at.desc(), Gap.id.desc())
        .limit(limit)
    )
    if line_ids:
        stmt = stmt.where(Gap.line_id.in_(line_ids))
    with connect(bind) as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame(
        [(s, ln, a, b, (b - a).total_seconds(), r, m) for s, ln, a, b, r, m in rows], columns=GAP_COLUMNS
    )
