"""Filter options, the schema check, empty databases and the filter value itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboard import queries
from dashboard.filters import Filters, time_range
from inspection.storage.db import default_sqlite_url, make_engine, upgrade
from tests.dashboard.conftest import Seed


def test_filter_options(engine, seed: Seed) -> None:
    options = queries.filter_options(engine)
    assert options.lines == ((seed.line_ids["L1"], "L1"), (seed.line_ids["L2"], "L2"))
    assert {label for _, _, label in options.coils} == {"L1 / C100", "L1 / C101", "L2 / C200"}
    assert set(options.classes) >= {"crazing", "inclusion", "patches", "scratches", "pitted_surface"}
    assert [(v, a) for _, v, a in options.model_versions] == [("v2", True), ("v1", False)]
    assert options.first_at == seed.t0 and options.last_at > options.first_at


def test_empty_database_gives_empty_answers(empty_url: str) -> None:
    eng = make_engine(empty_url)
    f = Filters()
    assert queries.schema_problem(eng) is None
    assert queries.totals(eng, f) == queries.Totals(0, 0, 0, 0.0, 0)
    for fn in (queries.defects_by_class, queries.pareto, queries.list_reviews, queries.reviewed_for_export):
        assert fn(eng, f).empty, fn
    assert queries.frame_trend(eng, f, bucket="hour").empty
    assert queries.list_defects(eng, f).empty and queries.count_defects(eng, f) == 0
    assert queries.list_coils(eng, f).empty and queries.latest_frames(eng).empty
    assert queries.live_stats(eng, since=datetime.now(UTC)).empty
    assert queries.list_model_versions(eng).empty and queries.defects_by_model(eng, f).empty
    options = queries.filter_options(eng)
    assert options.lines == () and options.first_at is None
    eng.dispose()


def test_schema_problem_names_missing_tables(tmp_path: Path) -> None:
    eng = make_engine(default_sqlite_url(tmp_path / "blank.db"))
    assert "defects" in (queries.schema_problem(eng) or "")
    eng.dispose()


def test_filters_validate_and_time_presets() -> None:
    now = datetime(2026, 3, 4, 10, 15, 30, tzinfo=UTC)
    assert time_range("Last 24 hours", now=now) == (
        datetime(2026, 3, 3, 10, 16, tzinfo=UTC),
        datetime(2026, 3, 4, 10, 16, tzinfo=UTC),
    )
    assert time_range("All time", now=now) == (None, None)
    day = datetime(2026, 3, 1, tzinfo=UTC)
    assert time_range("Custom range", now=now, custom=(day.date(), day.date())) == (
        day,
        day + timedelta(days=1),
    )
    with pytest.raises(ValueError, match="unknown time range"):
        time_range("Last decade", now=now)
    with pytest.raises(ValueError, match="timezone-aware"):
        Filters(start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="not after"):
        Filters(start=day, end=day)
    with pytest.raises(ValueError, match="min_score"):
        Filters(min_score=1.5)
    assert Filters().previous_period() is None and Filters(start=day).previous_period() is None


def test_a_database_older_than_the_dashboard_is_explained(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path / "old.db")
    upgrade(url, revision="0001")  # before coil grades
    eng = make_engine(url)
    problem = queries.schema_problem(eng) or ""
    eng.dispose()
    assert "coil_grades" in problem and "older than this dashboard" in problem
