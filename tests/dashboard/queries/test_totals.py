"""Overview totals, per-class counts and the Pareto against plain SQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard import queries
from dashboard.filters import Filters
from tests.dashboard.conftest import Seed
from tests.dashboard.queries.sqlkit import filter_cases, sqlite_db, where_sql


def test_totals_and_classes_match_sql_for_every_filter(engine, seeded_url: str, seed: Seed) -> None:
    con = sqlite_db(seeded_url)
    counts_seen = set()
    for f in filter_cases(seed):
        fw, fa = where_sql(f, frames=True)
        dw, da = where_sql(f, frames=False)
        status = dict(
            con.execute(f"SELECT status, COUNT(*) FROM frames WHERE {fw} GROUP BY status", fa).fetchall()
        )
        metres = con.execute(f"SELECT TOTAL(length_m) FROM frames WHERE status='ok' AND {fw}", fa).fetchone()[
            0
        ]
        per_class = dict(
            con.execute(
                f"SELECT class_name, COUNT(*) FROM defects WHERE {dw} GROUP BY class_name", da
            ).fetchall()
        )
        t = queries.totals(engine, f)
        assert (t.frames_ok, t.frames_failed, t.frames_dropped) == (
            status.get("ok", 0),
            status.get("failed", 0),
            status.get("dropped", 0),
        ), f
        assert t.metres == pytest.approx(metres)
        assert t.defects == sum(per_class.values())
        by_class = queries.defects_by_class(engine, f)
        assert dict(zip(by_class["class_name"], by_class["defects"], strict=True)) == per_class
        assert list(by_class["defects"]) == sorted(by_class["defects"], reverse=True)  # Pareto order
        counts_seen.add(t.defects)
    assert len(counts_seen) >= 6  # the filters really select different defects
    assert 0 in counts_seen


def test_rates_and_previous_period(engine, seed: Seed) -> None:
    f = Filters(start=seed.t0 + timedelta(hours=24), end=seed.t0 + timedelta(hours=48))
    now, before = queries.totals(engine, f), queries.totals(engine, f.previous_period())
    assert f.previous_period() == Filters(start=seed.t0, end=seed.t0 + timedelta(hours=24))
    assert now.per_1000_frames == pytest.approx(1000 * now.defects / now.frames_ok)
    assert now.per_100_m == pytest.approx(100 * now.defects / now.metres)
    whole = queries.totals(engine, Filters(start=seed.t0, end=seed.t0 + timedelta(hours=48)))
    assert now.defects + before.defects == whole.defects
    assert now.frames_ok + before.frames_ok == whole.frames_ok
    assert queries.Totals(0, 0, 0, 0.0, 0).per_1000_frames is None
    assert queries.Totals(0, 0, 0, 0.0, 0).per_100_m is None


def test_pareto_shares_add_up(engine) -> None:
    table = queries.pareto(engine, Filters())
    assert table["share_pct"].sum() == pytest.approx(100.0)
    assert table["cumulative_pct"].iloc[-1] == pytest.approx(100.0)
    assert list(table["cumulative_pct"]) == sorted(table["cumulative_pct"])
