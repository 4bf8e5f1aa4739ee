"""Per-bucket trend counts against buckets computed by hand in Python."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from dashboard import queries
from dashboard.filters import Filters
from dashboard.localtime import recent_shifts
from dashboard.queries.trends import _grain_index
from inspection.storage.db import default_sqlite_url, make_engine, upgrade
from inspection.storage.schema import Defect, Frame
from tests.dashboard.queries.sqlkit import parse_utc, sqlite_db


@pytest.mark.parametrize("classes", [("crazing", "patches", "scratches"), ()])  # () reads frames.n_defects
@pytest.mark.parametrize(("bucket", "size_h", "offset_h"), [("hour", 1, 0), ("shift", 8, 6), ("day", 24, 0)])
def test_trend_buckets_match_python_bucketing(engine, seeded_url, bucket, size_h, offset_h, classes) -> None:
    con = sqlite_db(seeded_url)

    def start_of(text: str) -> datetime:
        t = parse_utc(text)
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
    assert dict(zip(trend["bucket_start_utc"], trend["frames"], strict=True)) == dict(frames)
    assert dict(zip(trend["bucket_start_utc"], trend["frames_with_defects"], strict=True)) == defective
    assert trend["defects"].sum() == len(rows)
    assert list(trend["bucket_start"]) == sorted(trend["bucket_start"])
    assert list(trend["bucket_start"]) == [
        b.replace(tzinfo=None) for b in trend["bucket_start_utc"]
    ]  # UTC plant
    by_class = queries.defect_trend(engine, f, bucket=bucket, shift_start_hour=6)
    got = {
        (b, c): n
        for b, c, n in by_class[["bucket_start_utc", "class_name", "defects"]].itertuples(index=False)
    }
    assert got == dict(per_class)
    if bucket == "shift":
        assert {b.hour for b in trend["bucket_start"]} <= {6, 14, 22}


def test_unknown_buckets_and_zones_are_refused(engine) -> None:
    with pytest.raises(ValueError, match="unknown bucket"):
        queries.frame_trend(engine, Filters(), bucket="week")
    with pytest.raises(ValueError, match="not an IANA time zone"):
        queries.frame_trend(engine, Filters(), bucket="day", tz="Mars/Olympus")


# SQLite's own date arithmetic, independent of the module: the plant's clock as a fixed offset
ZONES = [("Asia/Kolkata", "+330 minutes"), ("America/Sao_Paulo", "-180 minutes")]  # neither has DST today


@pytest.mark.parametrize(("zone", "offset"), ZONES)
def test_days_and_shifts_follow_the_plant_clock(engine, seeded_url, zone: str, offset: str) -> None:
    con = sqlite_db(seeded_url)
    per_day = dict(
        con.execute(
            "SELECT date(processed_at, ?), COUNT(*) FROM frames WHERE status='ok' GROUP BY 1", (offset,)
        ).fetchall()
    )
    days = queries.frame_trend(engine, Filters(), bucket="day", tz=zone)
    assert {str(b.date()): n for b, n in zip(days["bucket_start"], days["frames"], strict=True)} == per_day
    # shifts from 06:00 local: 06-14, 14-22, 22-06 (the night shift belongs to the day it starts on)
    expected = Counter()
    for (local_minus_6,) in con.execute(
        "SELECT datetime(processed_at, ?, '-6 hours') FROM frames WHERE status='ok'", (offset,)
    ):
        t = datetime.fromisoformat(local_minus_6)
        start = t.replace(hour=t.hour // 8 * 8, minute=0, second=0) + timedelta(hours=6)
        expected[start] += 1
    assert sum(expected.values()) > 100  # every ok frame is in a shift
    shifts = queries.frame_trend(engine, Filters(), bucket="shift", shift_start_hour=6, tz=zone)
    assert dict(zip(shifts["bucket_start"], shifts["frames"], strict=True)) == dict(expected)
    assert {b.hour for b in shifts["bucket_start"]} <= {6, 14, 22}
    classes = queries.defect_trend(engine, Filters(), bucket="day", tz=zone)
    per_day_defects = dict(
        con.execute("SELECT date(created_at, ?), COUNT(*) FROM defects GROUP BY 1", (offset,))
    )
    got = classes.groupby(classes["bucket_start"].dt.date.astype(str))["defects"].sum().to_dict()
    assert got == per_day_defects


def test_a_day_with_a_clock_change_is_23_hours_long(tmp_path) -> None:
    """Europe/Berlin's spring-forward day: its bucket ends 23 h after it starts, in UTC."""
    url = default_sqlite_url(tmp_path / "dst.db")
    upgrade(url)
    con = sqlite_db(url)
    with con:
        con.execute("INSERT INTO lines (id, name, created_at) VALUES (1, 'L1', '2026-03-01 00:00:00')")
        for k, at in enumerate(("2026-03-28 22:30:00", "2026-03-29 12:00:00", "2026-03-29 22:30:00")):
            con.execute(
                "INSERT INTO frames (source, seq, line_id, processed_at, status, length_m, n_defects) "
                "VALUES ('s', ?, 1, ?, 'ok', 1.0, 0)",
                (k, at),
            )
    eng = make_engine(url)
    days = queries.frame_trend(eng, Filters(), bucket="day", tz="Europe/Berlin")
    eng.dispose()
    # 22:30 UTC on the 28th is 23:30 CET (the 28th); 22:30 UTC on the 29th is 00:30 CEST (the 30th)
    assert [str(b.date()) for b in days["bucket_start"]] == ["2026-03-28", "2026-03-29", "2026-03-30"]
    lengths = [
        (e - s).total_seconds() / 3600
        for s, e in zip(days["bucket_start_utc"], days["bucket_end_utc"], strict=True)
    ]
    assert lengths == [24.0, 23.0, 24.0]


def test_recent_shifts_follow_the_plant_clock_latest_first() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)
    last = datetime(2026, 3, 29, 12, 30, tzinfo=UTC)  # 14:30 CEST, the day clocks go forward
    shifts = recent_shifts(first, last, berlin, 6)
    assert [w.strftime("%d %H") for w, _, _ in shifts] == ["29 14", "29 06", "28 22", "28 14"]
    night = shifts[2]
    assert (night[2] - night[1]) == timedelta(hours=7)  # 22:00 CET to 06:00 CEST
    assert all(end > first and start <= last for _, start, end in shifts)


def test_trends_group_a_sqlite_database_on_its_hour_indexes(seeded_url: str) -> None:
    """All-time Trends sorted every defect to group it by hour (over 1 s on the 1M-defect bench); on
    migration 0005's indexes SQLite reads them in order. Checked on the plan SQLite chooses."""
    engine = make_engine(seeded_url, read_only=True)
    hour = _grain_index(Defect.created_at, "sqlite", 3600).label("g")
    by_class = select(hour, Defect.class_name, func.count()).group_by(hour, Defect.class_name)
    frame_hour = _grain_index(Frame.processed_at, "sqlite", 3600).label("g")
    frames = select(frame_hour, func.count(), func.sum(Frame.length_m), func.max(Frame.width)).where(
        Frame.status == "ok"
    )
    plans = {}
    with engine.connect() as conn:
        for name, stmt in (("defects", by_class), ("frames", frames.group_by(frame_hour))):
            compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
            plans[name] = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    engine.dispose()
    assert "COVERING INDEX ix_defects_hour_class_name" in plans["defects"]
    assert "TEMP B-TREE" not in plans["defects"]
    assert "COVERING INDEX ix_frames_status_hour" in plans["frames"] and "TEMP B-TREE" not in plans["frames"]


def test_a_window_with_edges_inside_hours_counts_exactly_its_defects_and_frames(engine, seeded_url) -> None:
    """The window is also put on the hour index (so SQLite reads only its stretch): the edge hours must
    still count only what lies inside the window."""
    con = sqlite_db(seeded_url)
    times = sorted(parse_utc(t) for (t,) in con.execute("SELECT created_at FROM defects"))
    start = times[len(times) // 3] + timedelta(minutes=7, seconds=13)
    end = times[2 * len(times) // 3] - timedelta(minutes=11)
    assert start.minute != 0 and end.minute != 0 and start < end
    f = Filters(start=start, end=end)
    defects = queries.defect_trend(engine, f, bucket="hour")
    assert defects["defects"].sum() == sum(start <= t < end for t in times)
    frame_times = [parse_utc(t) for (t,) in con.execute("SELECT processed_at FROM frames WHERE status='ok'")]
    frames = queries.frame_trend(engine, f, bucket="hour")
    assert frames["frames"].sum() == sum(start <= t < end for t in frame_times) > 0
