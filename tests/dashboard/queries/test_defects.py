"""Defect pages and latest reviews against plain SQL."""

from __future__ import annotations

import pytest

from dashboard import queries
from dashboard.filters import Filters
from tests.dashboard.conftest import Seed
from tests.dashboard.queries.sqlkit import sqlite_db


def test_defect_pages_cover_the_selection_once_in_order(engine, seeded_url: str) -> None:
    f = Filters(classes=("crazing", "inclusion"), min_score=0.5)
    total = queries.count_defects(engine, f)
    expected = [
        i
        for (i,) in sqlite_db(seeded_url).execute(
            "SELECT id FROM defects WHERE class_name IN ('crazing','inclusion') AND score >= 0.5 "
            "ORDER BY score DESC, id DESC"
        )
    ]
    assert total == len(expected) > 20
    ids = []
    for offset in range(0, total, 7):
        page = queries.list_defects(engine, f, sort="score_desc", limit=7, offset=offset)
        assert list(page.columns) == queries.DEFECT_COLUMNS
        ids.extend(page["id"])
    assert ids == expected
    newest = queries.list_defects(engine, f, sort="newest", limit=5)
    assert list(newest["created_at"]) == sorted(newest["created_at"], reverse=True)
    assert queries.list_defects(engine, f, limit=5, offset=total).empty
    with pytest.raises(ValueError, match="unknown sort"):
        queries.list_defects(engine, f, sort="random")


def test_review_state_and_latest_review(engine, seed: Seed) -> None:
    d1, d2, d3 = seed.reviewed_defect_ids
    total = queries.count_defects(engine, Filters())
    assert queries.count_defects(engine, Filters(), review_state="reviewed") == 3
    assert queries.count_defects(engine, Filters(), review_state="unreviewed") == total - 3
    reviewed = queries.list_defects(engine, Filters(), review_state="reviewed", sort="oldest", limit=10)
    assert set(reviewed["id"]) == {d1, d2, d3}
    latest = reviewed.set_index("id")
    assert (latest.loc[d1, "review_verdict"], latest.loc[d1, "reviewer"]) == (
        "rejected",
        "carol",
    )  # latest wins
    assert latest.loc[d3, "review_verdict"] == "relabelled" and latest.loc[d3, "review_new_class"]
    detail = queries.defect_detail(engine, d2)
    assert detail is not None and detail["review_verdict"] == "rejected" and detail["frame_width"] == 200
    assert queries.defect_detail(engine, 10**9) is None

    reviews = queries.list_reviews(engine, Filters())
    assert list(reviews["reviewer"]) == ["carol", "alice", "bob", "alice"]  # newest first
    assert len(queries.list_reviews(engine, Filters(), latest_only=True)) == 3
    summary = dict(queries.review_summary(engine, Filters()).itertuples(index=False))
    assert summary == {"rejected": 2, "relabelled": 1}
    export = queries.reviewed_for_export(engine, Filters())
    assert list(export["defect_id"]) == sorted([d1, d2, d3])
    assert list(export["verdict"]) == ["rejected", "rejected", "relabelled"]


def test_latest_review_id_is_the_newest_review(engine, seeded_url: str) -> None:
    ((newest,),) = sqlite_db(seeded_url).execute("SELECT MAX(id) FROM reviews").fetchall()
    assert queries.latest_review_id(engine) == newest > 0
