"""Review at speed (issue 16 item 15): bulk verdicts for a selection, keyboard shortcuts on them."""

from __future__ import annotations

import pytest

from tests.dashboard.pagekit import page_metrics, run_page, sql

pytestmark = pytest.mark.usefixtures("clear_streamlit_caches")


def test_bulk_reject_stores_one_review_per_selected_defect(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "review")
    at.text_input(key="review_name").set_value("erin")
    at.selectbox(key="review_sort").set_value("oldest")
    run_page(at)
    first = [
        i
        for (i,) in sql(
            seeded_url,
            "SELECT id FROM defects WHERE id NOT IN (SELECT defect_id FROM reviews) "
            "ORDER BY created_at, id LIMIT 3",
        )
    ]
    assert at.button(key="bulk_reject").disabled  # nothing selected yet
    assert at.button(key="bulk_reject").proto.shortcut and at.button(key="bulk_confirm").proto.shortcut
    for defect_id in first[:2]:
        at.checkbox(key=f"pick_{defect_id}").check()
    run_page(at)
    assert at.button(key="bulk_reject").label == "Reject selected (2)"
    n_before = sql(seeded_url, "SELECT COUNT(*) FROM reviews")[0][0]
    at.button(key="bulk_reject").click()
    run_page(at)
    rows = sql(
        seeded_url,
        "SELECT defect_id, reviewer, verdict FROM reviews WHERE id > (SELECT MAX(id) - 2 FROM reviews) "
        "ORDER BY defect_id",
    )
    assert sql(seeded_url, "SELECT COUNT(*) FROM reviews")[0][0] == n_before + 2
    assert rows == [(d, "erin", "rejected") for d in sorted(first[:2])]
    assert any("Saved 2 reviews" in s.value for s in at.success)
    assert (
        page_metrics(at)["Rejected (latest verdict)"]
        == sql(
            seeded_url,
            "SELECT COUNT(*) FROM reviews WHERE verdict='rejected' "
            "AND id IN (SELECT MAX(id) FROM reviews GROUP BY defect_id)",
        )[0][0]
    )
    # the selection is cleared after the verdict
    at.radio(key="review_state").set_value("all")
    run_page(at)
    assert at.button(key="bulk_reject").disabled
