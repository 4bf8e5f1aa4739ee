"""PostgreSQL gives the same answers as SQLite for the same rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dashboard import queries
from dashboard.filters import Filters
from inspection.storage.db import default_sqlite_url, make_engine, upgrade
from tests.dashboard.conftest import seed_database
from tests.dashboard.queries.sqlkit import filter_cases


@pytest.mark.postgres
def test_postgresql_gives_the_same_answers_as_sqlite(
    pg_url: str, seeded_url: str, tmp_path: Path, neu_images: list[Path]
) -> None:
    """The same rows seeded into PostgreSQL: every query returns what it returns on SQLite."""
    upgrade(pg_url)
    sqlite_url = default_sqlite_url(tmp_path / "twin" / "inspection.db")
    upgrade(sqlite_url)
    media = tmp_path / "crops"
    seed_lite = seed_database(sqlite_url, images=neu_images, media=media)
    seed_database(pg_url, images=neu_images, media=media, t0=seed_lite.t0)
    pg, lite = make_engine(pg_url), make_engine(sqlite_url)
    try:
        for k, f in enumerate(filter_cases(seed_lite)):
            assert queries.totals(pg, f) == queries.totals(lite, f)
            pd.testing.assert_frame_equal(queries.defects_by_class(pg, f), queries.defects_by_class(lite, f))
            bucket = ("hour", "shift", "day")[k % 3]
            pd.testing.assert_frame_equal(
                queries.frame_trend(pg, f, bucket=bucket), queries.frame_trend(lite, f, bucket=bucket)
            )
            pd.testing.assert_frame_equal(
                queries.defect_trend(pg, f, bucket=bucket), queries.defect_trend(lite, f, bucket=bucket)
            )
            sort = list(queries.SORTS)[k % len(queries.SORTS)]
            a = queries.list_defects(pg, f, sort=sort, limit=9, offset=3)
            pd.testing.assert_frame_equal(a, queries.list_defects(lite, f, sort=sort, limit=9, offset=3))
            assert queries.count_defects(pg, f, review_state="unreviewed") == queries.count_defects(
                lite, f, review_state="unreviewed"
            )
            pd.testing.assert_frame_equal(queries.list_coils(pg, f), queries.list_coils(lite, f))
            pd.testing.assert_frame_equal(queries.list_reviews(pg, f), queries.list_reviews(lite, f))
            pd.testing.assert_frame_equal(
                queries.reviewed_for_export(pg, f), queries.reviewed_for_export(lite, f)
            )
        coil = seed_lite.coil_ids["C200"]
        pd.testing.assert_frame_equal(
            queries.coil_density(pg, Filters(), coil, along_bin_m=7.5, across_bin_m=0.25),
            queries.coil_density(lite, Filters(), coil, along_bin_m=7.5, across_bin_m=0.25),
        )
        pd.testing.assert_frame_equal(queries.latest_frames(pg), queries.latest_frames(lite))
        assert queries.filter_options(pg) == queries.filter_options(lite)
        assert queries.schema_problem(pg) is None
    finally:
        pg.dispose()
        lite.dispose()
