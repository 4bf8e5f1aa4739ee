"""Gallery: defect crops, newest or best-scored first, and each one's frame with its box drawn on click."""

from __future__ import annotations

import math
from datetime import tzinfo
from functools import partial
from typing import SupportsFloat

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.colors import class_rgb
from dashboard.data import PageContext, context, media_path, q, query_engine
from dashboard.images import defect_picture, draw_box, load_rgb
from dashboard.localtime import fmt_time, local_columns
from dashboard.ui import csv_button, empty_state, fmt_int, table_columns
from dashboard.views.explain import explain_defect

TITLE = "Gallery"
SORT_LABELS = {
    "newest": "Newest first",
    "oldest": "Oldest first",
    "score_desc": "Highest score first",
    "score_asc": "Lowest score first",
    "position": "Coil and position",
}
COLUMNS = 4
THUMB_PX = 240
TABLE_NAMES = {
    "id": "Defect", "created_at": "Found at", "line": "Line", "coil": "Coil", "class_name": "Class",
    "score": "Score", "position_m": "Along (m)", "cross_m": "Across (m)", "review_verdict": "Latest review",
}  # fmt: skip
TABLE_COLUMNS = [
    "id",
    "created_at",
    "line",
    "coil",
    "class_name",
    "score",
    "position_m",
    "cross_m",
    "review_verdict",
]


def caption(row: pd.Series | dict) -> str:
    return f"#{int(row['id'])} · {row['class_name']} · {float(row['score']):.2f}"


def show_defect(ctx: PageContext, defect_id: int) -> None:
    """The defect's frame with its box drawn (or its crop when the frame image was not kept), and facts."""
    detail = q(ctx, queries.defect_detail, int(defect_id))
    if detail is None:
        st.warning(f"Defect {defect_id} no longer exists.")
        return
    xyxy = (float(detail["x1"]), float(detail["y1"]), float(detail["x2"]), float(detail["y2"]))
    frame = load_rgb(media_path(ctx, detail["frame_image_path"]))
    crop = defect_picture(detail, partial(media_path, ctx))
    if frame is not None:
        st.image(
            draw_box(frame, xyxy, label=detail["class_name"], rgb=class_rgb(str(detail["class_name"]))),
            caption=f"frame {detail['frame_seq']}",
        )
    if crop is not None:
        st.image(crop, caption=caption(detail), width="stretch" if frame is None else "content")
    if frame is None and crop is None:
        st.caption("No image of this defect is on disk.")
    heat = load_rgb(media_path(ctx, detail.get("map_path")))  # ``anomaly`` defects: the map's evidence
    if heat is not None:
        st.image(heat, caption="anomaly map (threshold: green; red: far above)", width="content")
    st.table(defect_facts(detail, ctx.tz))


def _metres(value: SupportsFloat | None, digits: int = 2) -> str:
    return "—" if value is None or pd.isna(value) else f"{float(value):,.{digits}f} m"


def defect_facts(detail: dict, tz: tzinfo) -> pd.DataFrame:
    """What is known about one defect, as a two-column table with units and the plant's time."""
    review = detail.get("review_verdict")
    if isinstance(review, str) and review:
        new = detail.get("review_new_class")
        review = f"{review}{f' → {new}' if isinstance(new, str) and new else ''} by {detail.get('reviewer')}"
    rows = [
        ("Class", detail["class_name"]),
        ("Score", f"{float(detail['score']):.3f}"),
        ("Line / coil", f"{detail.get('line') or '—'} / {detail.get('coil') or '—'}"),
        ("Along the strip", _metres(detail.get("position_m"))),
        ("Across the strip", _metres(detail.get("cross_m"))),
        ("Length × width", f"{_metres(detail.get('length_m'), 3)} × {_metres(detail.get('width_m'), 3)}"),
        ("Found at", fmt_time(detail.get("created_at"), tz, "%Y-%m-%d %H:%M:%S") or "—"),
        ("Frame", f"{detail.get('frame_source')} #{detail.get('frame_seq')}"),
        ("Model version", detail.get("model_version") or "—"),
        ("Latest review", review or "not reviewed"),
    ]
    return pd.DataFrame(rows, columns=["Fact", "Value"]).set_index("Fact")


@st.dialog("Defect", width="large")
def _enlarge(ctx: PageContext, defect_id: int) -> None:
    show_defect(ctx, defect_id)
    explain_defect(ctx, defect_id)


def defect_grid(ctx: PageContext, rows: pd.DataFrame, *, key: str) -> None:
    """Crops in a grid; each with a button that opens the enlarged view."""
    cols = st.columns(COLUMNS)
    for k, row in enumerate(rows.to_dict("records")):
        with cols[k % COLUMNS]:
            image = defect_picture(row, partial(media_path, ctx), size=THUMB_PX)
            if image is not None:
                st.image(image, caption=caption(row), width="stretch")
            else:
                st.caption(caption(row) + " (no image)")
            if st.button("Enlarge", key=f"{key}_enlarge_{row['id']}"):
                _enlarge(ctx, int(row["id"]))


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    c1, c2 = st.columns(2)
    sort = c1.selectbox("Sort", list(SORT_LABELS), format_func=SORT_LABELS.__getitem__, key="gallery_sort")
    total = q(ctx, queries.count_defects, ctx.filters)
    if total == 0:
        empty_state("No defects for these filters.")
        return
    size = ctx.config.page_size
    pages = max(1, math.ceil(total / size))
    page = int(c2.number_input(f"Page (of {pages:,})", 1, pages, 1, key="gallery_page"))
    rows = q(ctx, queries.list_defects, ctx.filters, sort=sort, limit=size, offset=(page - 1) * size)
    st.caption(f"{fmt_int(total)} defects · showing {len(rows)} from #{(page - 1) * size + 1:,}")
    defect_grid(ctx, rows, key="gallery")
    st.subheader("This page")
    st.dataframe(
        local_columns(rows[TABLE_COLUMNS], ctx.tz, ("created_at",)),
        hide_index=True,
        key="gallery_table",
        column_config=table_columns(TABLE_NAMES, ctx.tz),
    )
    limit, f, engine = ctx.config.csv_max_rows, ctx.filters, query_engine(ctx.config)
    csv_button(
        lambda: queries.list_defects(engine, f, sort=sort, limit=limit),
        "defects.csv",
        key="gallery_csv",
        label=f"Download CSV (all filtered defects, up to {limit:,})",
    )


if __name__ == "__main__":
    render(context())
