"""Pages of defects with their frame, line, coil, model and latest review (Gallery, Review)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Select,
    exists,
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
from inspection.storage.schema import Coil, Defect, Frame, Line, ModelVersion, Review

SORTS: dict[str, tuple[str, ...]] = {
    "newest": ("created_at desc", "id desc"),
    "oldest": ("created_at asc", "id asc"),
    "score_desc": ("score desc", "id desc"),
    "score_asc": ("score asc", "id asc"),
    "position": ("coil_id asc", "position_m asc", "id asc"),
}
"""Orders of the defect listings (gallery, review); each ends with the id so pages never overlap."""

REVIEW_STATES = ("all", "unreviewed", "reviewed")


def _review_condition(state: str) -> list[ColumnElement[bool]]:
    if state not in REVIEW_STATES:
        raise ValueError(f"unknown review state {state!r}; expected one of {REVIEW_STATES}")
    reviewed = exists().where(Review.defect_id == Defect.id)
    return [] if state == "all" else [~reviewed if state == "unreviewed" else reviewed]


def count_defects(bind: Bind, f: Filters, *, review_state: str = "all") -> int:
    """How many defects the filters (and the review state) select.

    Unreviewed = all - reviewed: reviews are few, so this never probes ``reviews`` once per defect.
    """
    _review_condition(review_state)  # validates the name
    with connect(bind) as conn:
        total = 0
        if review_state != "reviewed":
            total = int(
                conn.scalar(select(func.count()).select_from(Defect).where(*defect_conditions(f))) or 0
            )
        if review_state == "all":
            return total
        reviewed_ids = select(Review.defect_id).distinct().subquery()
        reviewed = int(
            conn.scalar(
                select(func.count())
                .select_from(reviewed_ids)
                .join(Defect, Defect.id == reviewed_ids.c.defect_id)
                .where(*defect_conditions(f))
            )
            or 0
        )
    return reviewed if review_state == "reviewed" else total - reviewed


DEFECT_COLUMNS = [
    "id", "created_at", "line", "coil_id", "coil", "class_name", "score", "position_m", "cross_m", "length_m",
    "width_m", "x1", "y1", "x2", "y2", "crop_path", "frame_id", "frame_source", "frame_seq",
    "frame_image_path", "frame_width", "frame_height", "model_version", "track_id",
    "review_verdict", "review_new_class", "reviewer", "reviewed_at", "map_path",
]  # fmt: skip


def _order_terms(sort: str, table: Any) -> list[Any]:
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; expected one of {list(SORTS)}")
    terms = []
    for item in SORTS[sort]:
        name, direction = item.split()
        col = table.c[name]
        terms.append((col.desc() if direction == "desc" else col.asc()).nulls_last())
    return terms


def _detail_stmt() -> Select[*tuple[Any, ...]]:
    latest = (
        select(func.max(Review.id)).where(Review.defect_id == Defect.id).correlate(Defect).scalar_subquery()
    )
    return (
        select(
            Defect.id,
            Defect.created_at,
            Line.name,
            Defect.coil_id,
            Coil.code,
            Defect.class_name,
            Defect.score,
            Defect.position_m,
            Defect.cross_m,
            Defect.length_m,
            Defect.width_m,
            Defect.x1,
            Defect.y1,
            Defect.x2,
            Defect.y2,
            Defect.crop_path,
            Frame.id,
            Frame.source,
            Frame.seq,
            Frame.image_path,
            Frame.width,
            Frame.height,
            ModelVersion.version,
            Defect.track_id,
            Review.verdict,
            Review.new_class,
            Review.reviewer,
            Review.reviewed_at,
            Defect.map_path,
        )  # fmt: skip
        .join(Frame, Frame.id == Defect.frame_id)
        .outerjoin(Line, Line.id == Defect.line_id)
        .outerjoin(Coil, Coil.id == Defect.coil_id)
        .outerjoin(ModelVersion, ModelVersion.id == Defect.model_version_id)
        .outerjoin(Review, Review.id == latest)
    )


def list_defects(
    bind: Bind,
    f: Filters,
    *,
    sort: str = "newest",
    review_state: str = "all",
    limit: int = 24,
    offset: int = 0,
) -> pd.DataFrame:
    """One page of defects with their frame, line, coil, model and latest review (``DEFECT_COLUMNS``).

    The page's ids are chosen first (filters, order, ``LIMIT``/``OFFSET`` on the defects table alone), then
    only those rows are joined, so the cost does not grow with the joins on a million rows.
    """
    page = (
        select(Defect.id, Defect.created_at, Defect.score, Defect.coil_id, Defect.position_m)
        .where(*defect_conditions(f), *_review_condition(review_state))
        .subquery("page")
    )
    with connect(bind) as conn:
        ids = [
            int(i)
            for i in conn.scalars(
                select(page.c.id).order_by(*_order_terms(sort, page)).limit(limit).offset(offset)
            )
        ]
        if not ids:
            return pd.DataFrame(columns=DEFECT_COLUMNS)
        df = to_frame(conn, _detail_stmt().where(Defect.id.in_(ids)), DEFECT_COLUMNS)
    rank = {defect_id: k for k, defect_id in enumerate(ids)}
    return df.sort_values("id", key=lambda col: col.map(rank), ignore_index=True)


def defect_detail(bind: Bind, defect_id: int) -> dict[str, Any] | None:
    """One defect as a dict of ``DEFECT_COLUMNS``; None when it does not exist."""
    with connect(bind) as conn:
        row = conn.execute(_detail_stmt().where(Defect.id == defect_id)).first()
    return None if row is None else dict(zip(DEFECT_COLUMNS, tuple(row), strict=True))
