"""The dashboard's query module against the seeded database: every figure is checked against SQL or
Python written here, independently of the module (plain ``sqlite3`` and hand-made buckets)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import make_url

from dashboard import queries
from dashboard.filters import Filters, time_range
from inspection.storage.db import default_sqlite_url, make_engine, upgrade
from tests.dashboard.conftest import Seed, seed_database


def _db(url: str) -> sqlite3.Connection:
    return sqlite3.connect(make_url(url).database)


def _ts(t: datetime) -> str:
    """How the schema stores a time on SQLite (naive UTC text, 6 decimals)."""
    return t.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _where(f: Filters, *, frames: bool) -> tuple[str, list]:
    """The WHERE clause of ``f`` in plain SQL, written independently of dashboard.queries."""
    time_col = "processed_at" if frames else "created_at"
    terms, args = ["1=1"], []
    if f.start:
        terms.append(f"{time_col} >= ?")
        args.append(_ts(f.start))
    if f.end:
        terms.append(f"{time_col} < ?")
        args.append(_ts(f.end))
    for col, values in (
        ("line_id", f.line_ids),
        ("coil_id", f.coil_ids),
        ("model_version_id", f.model_version_ids),
    ):
        if values:
            terms.append(f"{col} IN ({','.join('?' * len(values))})")
            args.extend(values)
    if not frames:
        if f.classes:
            terms.append(f"class_name IN ({','.join('?' * len(f.classes))})")
            args.extend(f.classes)
        if f.min_score:
            terms.append("score >= ?")
            args.append(f.min_score)
    return " AND ".join(terms), args


def _filter_cases(seed: Seed) -> list[Filters]:
    t0 = seed.t0
    return [
        Filters(),
        Filters(line_ids=(seed.line_ids["L2"],)),
        Filters(coil_ids=(seed.coil_ids["C100"], seed.coil_ids["C200"])),
        Filters(classes=("crazing", "scratches")),
        Filters(min_score=0.6),
        Filters(model_version_ids=(seed.model_ids["v2"],)),
        Filters(start=t0 + timedelta(hours=10), end=t0 + timedelta(hours=30)),
        Filters(
            start=t0 + timedelta(hours=5),
            line_ids=(seed.line_ids["L1"],),
            classes=("inclusion",),
            min_score=0.4,
        ),
        Filters(start=t0 + timedelta(days=30)),  # nothing
    ]


@pytest.fixture
def engine(seeded_url: str):
    eng = make_engine(seeded_url)
    yield eng
    eng.dispose()


def test_totals_and_classes_match_sql_for_every_filter(engine, seeded_url: str, seed: Seed) -> None:
    con = _db(seeded_url)
    counts_seen = set()
    for f in _filter_cases(seed):
        fw, fa = _where(f, frames=True)
        dw, da = _where(f, frames=False)
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


@pytest.mark.parametrize("classes", [("crazing", "patches", "scratches"), ()])  # () reads frames.n_defects
@pytest.mark.parametrize(("bucket", "size_h", "offset_h"), [("hour", 1, 0), ("shift", 8, 6), ("day", 24, 0)])
def test_trend_buckets_match_python_bucketing(engine, seeded_url, bucket, size_h, offset_h, classes) -> None:
    con = _db(seeded_url)

    def start_of(text: str) -> datetime:
        t = _parse(text)
        epoch = int(t.timestamp())
        size, offset = size_h * 3600, offset_h * 3600
        return datetime.fromtimestamp((epoch - offset) // size * size + offset, UTC)

    f = Filters(classes=classes)
    frames = Counter(start_of(t) for (t,) in con.execute("SELECT processed_at FROM frames WHERE status='ok'"))
    rows = [
        r
        for r in con.execute("SELECT created_at, class_name, frame_id FROM defects").fetchall()
        if not classes or r[1] in classes
    ]
    per_class = Counter((start_of(t), c) for t, c, _ in rows)
    defective = {b: len({fid for t, _, fid in rows if start_of(t) == b}) for b in frames}

    trend = queries.frame_trend(engine, f, bucket=bucket, shift_start_hour=6)
    assert dict(zip(trend["bucket_start"], trend["frames"], strict=True)) == dict(frames)
    assert dict(zip(trend["bucket_start"], trend["frames_with_defects"], strict=True)) == defective
    assert trend["defects"].sum() == len(rows)
    assert list(trend["bucket_start"]) == sorted(trend["bucket_start"])
    by_class = queries.defect_trend(engine, f, bucket=bucket, shift_start_hour=6)
    got = {(b, c): n for b, c, n in by_class.itertuples(index=False)}
    assert got == dict(per_class)
    if bucket == "shift":
        assert {b.hour for b in trend["bucket_start"]} <= {6, 14, 22}


def test_bucket_params_reject_unknown() -> None:
    assert queries.bucket_params("shift", shift_start_hour=22) == (8 * 3600, 6 * 3600)
    with pytest.raises(ValueError, match="unknown bucket"):
        queries.bucket_params("week")


def test_defect_pages_cover_the_selection_once_in_order(engine, seeded_url: str) -> None:
    f = Filters(classes=("crazing", "inclusion"), min_score=0.5)
    total = queries.count_defects(engine, f)
    expected = [
        i
        for (i,) in _db(seeded_url).execute(
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


def test_coils_and_map(engine, seeded_url: str, seed: Seed) -> None:
    con = _db(seeded_url)
    coils = queries.list_coils(engine, Filters()).set_index("code")
    for code, coil_id in seed.coil_ids.items():
        n = con.execute("SELECT COUNT(*) FROM defects WHERE coil_id=?", (coil_id,)).fetchone()[0]
        frames = con.execute(
            "SELECT COUNT(*) FROM frames WHERE coil_id=? AND status='ok'", (coil_id,)
        ).fetchone()
        assert coils.loc[code, "defects"] == n
        assert coils.loc[code, "frames"] == frames[0]
    only_l1 = queries.list_coils(engine, Filters(line_ids=(seed.line_ids["L1"],)))
    assert set(only_l1["code"]) == {"C100", "C101"}

    coil = seed.coil_ids["C101"]
    f = Filters(min_score=0.5)
    points = queries.coil_defects(engine, f, coil)
    n = con.execute("SELECT COUNT(*) FROM defects WHERE coil_id=? AND score>=0.5", (coil,)).fetchone()[0]
    assert len(points) == n and queries.count_coil_defects(engine, f, coil) == (n, 0)
    assert list(points["position_m"]) == sorted(points["position_m"])
    # the coil filter of the sidebar does not hide the coil the map was asked for
    assert len(queries.coil_defects(engine, f.with_(coil_ids=(seed.coil_ids["C100"],)), coil)) == n
    grid = queries.coil_density(engine, f, coil, along_bin_m=10.0, across_bin_m=0.5)
    assert grid["defects"].sum() == n
    for row in grid.itertuples(index=False):
        inside = points[
            (points["position_m"] >= row.position_m)
            & (points["position_m"] < row.position_m + 10.0)
            & (points["cross_m"] >= row.cross_m)
            & (points["cross_m"] < row.cross_m + 0.5)
            & (points["class_name"] == row.class_name)
        ]
        assert len(inside) == row.defects


def test_models_runs_and_usage(engine, seeded_url: str, seed: Seed) -> None:
    models = queries.list_model_versions(engine)
    assert list(models["version"]) == ["v2", "v1"]
    assert list(models["is_active"]) == [True, False]
    assert models.set_index("version").loc["v1", "metrics"]["per_class"] == {"crazing": 0.52}
    usage = queries.defects_by_model(engine, Filters()).set_index("model_version")
    con = _db(seeded_url)
    for version, mid in seed.model_ids.items():
        assert (
            usage.loc[version, "defects"]
            == con.execute("SELECT COUNT(*) FROM defects WHERE model_version_id=?", (mid,)).fetchone()[0]
        )
    runs = queries.list_retrain_runs(engine)
    assert list(runs["status"]) == ["promoted"] and runs["summary"][0] == {"added": {"crazing": 12}}


def test_live_latest_frame_per_line(engine, seeded_url: str, seed: Seed) -> None:
    latest = queries.latest_frames(engine).set_index("line")
    con = _db(seeded_url)
    for line, line_id in seed.line_ids.items():
        fid, path, last = con.execute(
            "SELECT id, image_path, (SELECT MAX(processed_at) FROM frames WHERE line_id=?) FROM frames "
            "WHERE line_id=? AND image_path IS NOT NULL ORDER BY processed_at DESC LIMIT 1",
            (line_id, line_id),
        ).fetchone()
        assert latest.loc[line, "frame_id"] == fid and latest.loc[line, "image_path"] == path
        assert latest.loc[line, "last_frame_at"] == _parse(last)
    since = seed.t0 + timedelta(hours=40)
    stats = queries.live_stats(engine, since=since).set_index("line_id")
    for line_id in seed.line_ids.values():
        frames, defects = con.execute(
            "SELECT SUM(status='ok'), SUM(n_defects) FROM frames WHERE line_id=? AND processed_at>=?",
            (line_id, _ts(since)),
        ).fetchone()
        assert (stats.loc[line_id, "frames"], stats.loc[line_id, "defects"]) == (frames, defects)
    assert list(queries.latest_frames(engine, line_ids=(seed.line_ids["L2"],))["line"]) == ["L2"]
    gaps = queries.recent_gaps(engine, since=seed.t0 + timedelta(hours=44, minutes=11))
    assert list(gaps[["line", "seconds", "reason"]].itertuples(index=False, name=None)) == [
        ("L2", 120.0, "camera disconnected")
    ]
    assert queries.recent_gaps(engine, since=seed.t0 + timedelta(hours=45)).empty
    assert queries.recent_gaps(engine, since=seed.t0, line_ids=(seed.line_ids["L1"],)).empty


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
        for k, f in enumerate(_filter_cases(seed_lite)):
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
