"""Operators' reviews: the list, the verdict counts and the rows a VoTT export is made of."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import (
    case,
    func,
    select,
)

from dashboard.filters import Filters
from dashboard.queries.base import (
    Bind,
    connect,
    defect_conditions,
    to_frame,
)
from inspection.storage.schema import Coil, Defect, Frame, Line, Review

REVIEW_COLUMNS = [
    "review_id", "reviewed_at", "reviewer", "defect_id", "verdict", "old_class", "new_class", "note",
    "score", "line", "coil", "defect_created_at", "used_in_retrain_run_id",
]  # fmt: skip


def list_reviews(bind: Bind, f: Filters, *, limit: int = 1000, latest_only: bool = False) -> pd.DataFrame:
    """Reviews of the filtered defects, newest first (``REVIEW_COLUMNS``): who, when, what changed.

    The class filter applies to the class the model gave (``old_class``). ``latest_only`` keeps the latest
    review of each defect (the one that counts).
    """
    stmt = (
        select(
            Review.id,
            Review.reviewed_at,
            Review.reviewer,
            Review.defect_id,
            Review.verdict,
            Review.old_class,
            Review.new_class,
            Review.note,
            Defect.score,
            Line.name,
            Coil.code,
            Defect.created_at,
            Review.used_in_retrain_run_id,
        )  # fmt: skip
        .join(Defect, Defect.id == Review.defect_id)
        .outerjoin(Line, Line.id == Defect.line_id)
        .outerjoin(Coil, Coil.id == Defect.coil_id)
        .where(*defect_conditions(f))
        .order_by(Review.reviewed_at.desc(), Review.id.desc())
        .limit(limit)
    )
    if latest_only:
        latest = select(func.max(Review.id).label("rid")).group_by(Review.defect_id).subquery()
        stmt = stmt.join(latest, latest.c.rid == Review.id)
    with connect(bind) as conn:
        return to_frame(conn, stmt, REVIEW_COLUMNS)


EXPORT_COLUMNS = [
    "defect_id", "review_id", "verdict", "class_name", "new_class", "score", "x1", "y1", "x2", "y2",
    "crop_path", "frame_width", "frame_height", "frame_image_path", "frame_source", "frame_seq",
]  # fmt: skip


def reviewed_for_export(bind: Bind, f: Filters, *, limit: int = 100_000) -> pd.DataFrame:
    """The filtered defects that have a review, with the latest one (``EXPORT_COLUMNS``), by defect id."""
    latest = (
        select(Review.defect_id.label("defect_id"), func.max(Review.id).label("rid"))
        .group_by(Review.defect_id)
        .subquery()
    )
    stmt = (
        select(
            Defect.id,
            Review.id,
            Review.verdict,
            Defect.class_name,
            Review.new_class,
            Defect.score,
            Defect.x1,
            Defect.y1,
            Defect.x2,
            Defect.y2,
            Defect.crop_path,
            Frame.width,
            Frame.height,
            Frame.image_path,
            Frame.source,
            Frame.seq,
        )  # fmt: skip
        .select_from(latest)
        .join(Defect, Defect.id == latest.c.defect_id)
        .join(Review, Review.id == latest.c.rid)
        .join(Frame, Frame.id == Defect.frame_id)
        .where(*defect_conditions(f))
        .order_by(Defect.id)
        .limit(limit)
    )
    with connect(bind) as conn:
        return to_frame(conn, stmt, EXPORT_COLUMNS)


def latest_review_id(bind: Bind) -> int:
    """The id of the newest review (0 when there is none): it changes whenever a review is saved."""
    with connect(bind) as conn:
        return int(conn.scalar(select(func.max(Review.id))) or 0)


def review_summary(bind: Bind, f: Filters) -> pd.DataFrame:
    """Latest verdict counts of the filtered defects: columns ``verdict, defects``."""
    latest = select(func.max(Review.id).label("rid")).group_by(Review.defect_id).subquery()
    stmt = (
        select(Review.verdict, func.count())
        .join(latest, latest.c.rid == Review.id)
        .join(Defect, Defect.id == Review.defect_id)
        .where(*defect_conditions(f))
        .group_by(Review.verdict)
        .order_by(Review.verdict)
    )
    with connect(bind) as conn:
        return to_frame(conn, stmt, ["verdict", "defects"])


PRECISION_COLUMNS = ["class_name", "reviewed", "confirmed", "relabelled", "rejected", "precision"]


def review_precision(bind: Bind, f: Filters) -> pd.DataFrame:
    """Per class the model gave, what operators said of its detections (latest verdict per defect).

    ``precision`` is confirmed / reviewed: a rejected detection was no defect and a relabelled one was
    a defect of another class, so both count against the class the model said (``PRECISION_COLUMNS``).
    """
    latest = select(func.max(Review.id).label("rid")).group_by(Review.defect_id).subquery()
    counts = {
        v: func.sum(case((Review.verdict == v, 1), else_=0)) for v in ("confirmed", "relabelled", "rejected")
    }
    stmt = (
        select(Defect.class_name, func.count(), counts["confirmed"], counts["relabelled"], counts["rejected"])
        .join(latest, latest.c.rid == Review.id)
        .join(Defect, Defect.id == Review.defect_id)
        .where(*defect_conditions(f))
        .group_by(Defect.class_name)
        .order_by(Defect.class_name)
    )
    with connect(bind) as conn:
        df = to_frame(conn, stmt, PRECISION_COLUMNS[:-1])
    for col in PRECISION_COLUMNS[1:-1]:
        df[col] = df[col].fillna(0).astype("int64")
    df["precision"] = df["confirmed"] / df["reviewed"] if len(df) else pd.Series(dtype=float)
    return df
