"""Review: an operator confirms, rejects or relabels detections; reviewed ones export to VoTT.

Every verdict is a new row of ``reviews`` (who, when, old and new class, note) written through the
storage repository; the defect row itself never changes. The latest review of a defect counts.
"""

from __future__ import annotations

from functools import partial

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from dashboard import queries
from dashboard.data import PageContext, clear_query_cache, context, engine, media_path, q
from dashboard.images import defect_picture
from dashboard.localtime import fmt_time, local_columns
from dashboard.ui import csv_button, empty_state, fmt_int, table_columns
from dashboard.vott_download import export_section
from inspection.storage.repository import Repository
from inspection.storage.reviews import add_review

TITLE = "Review"
REVIEW_TABLE_NAMES = {
    "review_id": "Review", "reviewed_at": "Reviewed at", "reviewer": "Reviewer", "defect_id": "Defect",
    "verdict": "Verdict", "old_class": "Model's class", "new_class": "New class", "note": "Note",
    "score": "Score", "line": "Line", "coil": "Coil", "defect_created_at": "Found at",
    "used_in_retrain_run_id": "Used by retrain run",
}  # fmt: skip
VERDICTS = {"confirmed": "Confirm", "rejected": "Reject (no real defect)", "relabelled": "Relabel"}
STATES = {"unreviewed": "Not reviewed yet", "reviewed": "Reviewed", "all": "All"}
ORDERS = {
    "score_asc": "Least sure first",
    "score_desc": "Most sure first",
    "newest": "Newest first",
    "oldest": "Oldest first",
}
REVIEW_PAGE_SIZE = 8
_FLASH = "review_flash"
_CLEAR_PICKS = "review_clear_picks"


def save_review(
    ctx: PageContext, defect_id: int, *, reviewer: str, verdict: str, new_class: str | None, note: str
) -> int:
    """Store one verdict (``reviews.add_review``) and return the new review's id."""
    url = ctx.config.review_url
    if url is None:
        raise PermissionError("the dashboard is read-only: reviews are disabled")
    repo = Repository(engine(url, False))
    with repo.transaction() as session:
        review = add_review(
            session,
            defect_id,
            reviewer=reviewer,
            verdict=verdict,
            new_class=new_class if verdict == "relabelled" else None,
            note=note.strip() or None,
        )
    clear_query_cache()
    return int(review.id)


def _text(value: object) -> str | None:
    """A stored text value, or None for SQL NULL (which pandas hands over as ``None`` or ``nan``)."""
    return value if isinstance(value, str) and value else None


def latest_review_text(row: dict) -> str | None:
    """``"Latest review: relabelled → patches by alice"``; None for a defect never reviewed.

    Only a relabel has a new class; the others read ``"confirmed by bob"``.
    """
    verdict = _text(row.get("review_verdict"))
    if verdict is None:
        return None
    new_class = _text(row.get("review_new_class"))
    arrow = f" → {new_class}" if new_class else ""
    return f"Latest review: {verdict}{arrow} by {_text(row.get('reviewer')) or 'unknown'}"


def _reviewer(ctx: PageContext) -> str:
    if ctx.user:
        st.caption(f"Reviewing as **{ctx.user}**")
        return ctx.user
    return st.text_input("Your name (stored with each review)", key="review_name").strip()


def _review_form(ctx: PageContext, row: dict, reviewer: str) -> None:
    defect_id = int(row["id"])
    left, right = st.columns([1, 2])
    with left:
        image = defect_picture(row, partial(media_path, ctx), size=320)
        if image is not None:
            st.image(image, width="stretch")
        else:
            st.caption("(no image on disk)")
    with right:
        st.markdown(
            f"**#{defect_id} · {row['class_name']}** · score {float(row['score']):.2f} · "
            f"{row['line'] or '-'} / {row['coil'] or '-'} · {fmt_time(row['created_at'], ctx.tz)}"
        )
        if latest := latest_review_text(row):
            st.caption(latest)
        st.checkbox("Select for a bulk verdict", key=f"pick_{defect_id}")
        verdict = st.radio(
            "Verdict", list(VERDICTS), index=None, format_func=VERDICTS.get, horizontal=True,
            key=f"verdict_{defect_id}",
        )  # fmt: skip
        new_class = None
        if verdict == "relabelled":  # the class list only when relabelling
            others = [c for c in ctx.options.classes if c != row["class_name"]]
            new_class = st.selectbox(
                "New class", others, index=None, placeholder="The right class", key=f"new_class_{defect_id}"
            )
        note = st.text_input("Note", key=f"note_{defect_id}")
        ready = ctx.config.reviews_enabled and verdict is not None
        if st.button("Save review", key=f"save_{defect_id}", disabled=not ready):
            _save_and_rerun(
                ctx, [defect_id], reviewer=reviewer, verdict=str(verdict), new_class=new_class, note=note
            )


def _save_and_rerun(
    ctx: PageContext, defect_ids: list[int], *, reviewer: str, verdict: str, new_class: str | None, note: str
) -> None:
    """Store one verdict for each defect, then rerun with a message; errors shown, nothing half-said."""
    if not reviewer:
        st.error("Enter your name first: every review records who made it.")
        return
    saved = []
    for defect_id in defect_ids:
        try:
            saved.append(
                save_review(
                    ctx, defect_id, reviewer=reviewer, verdict=verdict, new_class=new_class, note=note
                )
            )
        except (ValueError, LookupError, PermissionError, SQLAlchemyError) as exc:
            st.error(f"Review of defect #{defect_id} not saved: {exc}")
            return
    if len(defect_ids) == 1:
        st.session_state[_FLASH] = f"Saved review {saved[0]}: defect #{defect_ids[0]} {verdict}."
    else:
        st.session_state[_FLASH] = f"Saved {len(saved)} reviews: {len(defect_ids)} defects {verdict}."
    st.session_state[_CLEAR_PICKS] = defect_ids
    st.rerun()


def _bulk_bar(ctx: PageContext, rows: list[dict], reviewer: str) -> None:
    """Confirm or reject every selected defect of the page at once (Alt+Y / Alt+N)."""
    picked = [int(r["id"]) for r in rows if st.session_state.get(f"pick_{int(r['id'])}")]
    enabled = ctx.config.reviews_enabled and bool(picked)
    c1, c2, c3 = st.columns([1, 1, 2])
    confirm = c1.button(
        f"Confirm selected ({len(picked)})", key="bulk_confirm", disabled=not enabled, shortcut="alt+y"
    )
    reject = c2.button(
        f"Reject selected ({len(picked)})", key="bulk_reject", disabled=not enabled, shortcut="alt+n"
    )
    c3.caption("Tick defects below, then Alt+Y confirms or Alt+N rejects them all.")
    if confirm or reject:
        verdict = "confirmed" if confirm else "rejected"
        _save_and_rerun(ctx, picked, reviewer=reviewer, verdict=verdict, new_class=None, note="")


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    if flash := st.session_state.pop(_FLASH, None):
        st.success(flash)
    for defect_id in st.session_state.pop(_CLEAR_PICKS, []):  # before the checkboxes are drawn again
        st.session_state.pop(f"pick_{defect_id}", None)
    if not ctx.config.reviews_enabled:
        st.info("This dashboard is read-only: reviews can be read and exported, not written.")
    summary = q(ctx, queries.review_summary, ctx.filters)
    counts = dict(zip(summary["verdict"], summary["defects"], strict=True))
    cols = st.columns(3)
    for col, verdict in zip(cols, VERDICTS, strict=True):
        col.metric(f"{verdict.capitalize()} (latest verdict)", fmt_int(int(counts.get(verdict, 0))))

    reviewer = _reviewer(ctx) if ctx.config.reviews_enabled else ""
    c1, c2 = st.columns(2)
    state = c1.radio("Show", list(STATES), format_func=STATES.get, horizontal=True, key="review_state")
    sort = c2.selectbox("Order", list(ORDERS), format_func=ORDERS.__getitem__, key="review_sort")
    total = q(ctx, queries.count_defects, ctx.filters, review_state=state)
    if total == 0:
        empty_state("No defects to show here for these filters.")
    else:
        pages = max(1, -(-total // REVIEW_PAGE_SIZE))
        page = int(st.number_input(f"Page (of {pages:,})", 1, pages, 1, key="review_page"))
        rows = q(
            ctx, queries.list_defects, ctx.filters, sort=sort, review_state=state,
            limit=REVIEW_PAGE_SIZE, offset=(page - 1) * REVIEW_PAGE_SIZE,
        )  # fmt: skip
        st.caption(f"{fmt_int(total)} defect(s)")
        records = rows.to_dict("records")
        _bulk_bar(ctx, records, reviewer)
        for row in records:
            with st.container(border=True):
                _review_form(ctx, row, reviewer)

    st.subheader("Reviews")
    reviews = q(ctx, queries.list_reviews, ctx.filters, limit=ctx.config.csv_max_rows)
    if reviews.empty:
        empty_state("No reviews yet for these filters.")
    else:
        st.dataframe(
            local_columns(reviews, ctx.tz, ("reviewed_at", "defect_created_at")),
            hide_index=True,
            key="review_table",
            column_config=table_columns(REVIEW_TABLE_NAMES, ctx.tz),
        )
        csv_button(reviews, "reviews.csv", key="review_csv")
    export_section(ctx)


if __name__ == "__main__":
    render(context())
