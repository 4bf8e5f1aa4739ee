"""The Review page's VoTT export: prepared on request, kept in the session, dropped when it goes stale."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboard import queries
from dashboard.data import PageContext, media_path, query_engine
from dashboard.export import export_zip, reviewed_set
from dashboard.filters import Filters

_EXPORT = "review_export_zip"


@dataclass(frozen=True, slots=True)
class PreparedExport:
    """A VoTT zip kept in the session, with what it was made from (``key``) to tell when it is stale."""

    key: tuple[Filters, int]
    data: bytes
    n_images: int
    n_boxes: int
    problems: tuple[str, ...]


def export_key(ctx: PageContext) -> tuple[Filters, int]:
    """What a prepared export depends on: the filters and the newest review (ids only grow).

    Read without the cache: a review another operator saved a second ago must make the old zip stale.
    """
    return ctx.filters, queries.latest_review_id(query_engine(ctx.config))


def export_section(ctx: PageContext) -> None:
    st.subheader("Export reviewed detections (VoTT JSON with images)")
    key = export_key(ctx)
    if st.button("Prepare VoTT export", key="review_export"):
        rows = queries.reviewed_for_export(query_engine(ctx.config), ctx.filters)
        aset = reviewed_set(
            rows, lambda p: media_path(ctx, p), class_names=ctx.options.classes, source="inspection-db"
        )
        st.session_state[_EXPORT] = PreparedExport(
            key=key,
            data=export_zip(aset),
            n_images=len(aset.images),
            n_boxes=aset.num_boxes,
            problems=tuple(str(p) for p in aset.problems),
        )
    prepared: PreparedExport | None = st.session_state.get(_EXPORT)
    if prepared is not None and prepared.key != key:
        del st.session_state[_EXPORT]
        st.caption("The filters or the reviews changed since the export was prepared: prepare it again.")
        return
    if prepared is not None:
        st.caption(
            f"{prepared.n_images} image(s), {prepared.n_boxes} box(es); "
            f"{len(prepared.problems)} defect(s) left out."
        )
        for problem in prepared.problems[:20]:
            st.caption(problem)
        st.download_button(
            "Download VoTT export (zip)",
            prepared.data,
            file_name="steel-reviews-vott.zip",
            mime="application/zip",
            key="review_export_download",
            on_click="ignore",
        )
