"""The Live page's queries against plain SQL."""

from __future__ import annotations

from datetime import timedelta

from dashboard import queries
from tests.dashboard.conftest import Seed
from tests.dashboard.queries.sqlkit import parse_utc, sqlite_db, sqlite_time


def test_live_latest_frame_per_line(engine, seeded_url: str, seed: Seed) -> None:
    latest = queries.latest_frames(engine).set_index("line")
    con = sqlite_db(seeded_url)
    for line, line_id in seed.line_ids.items():
        fid, path, last = con.execute(
            "SELECT id, image_path, (SELECT MAX(processed_at) FROM frames WHERE line_id=?) FROM frames "
            "WHERE line_id=? AND image_path IS NOT NULL ORDER BY processed_at DESC LIMIT 1",
            (line_id, line_id),
        ).fetchone()
        assert latest.loc[line, "frame_id"] == fid and latest.loc[line, "image_path"] == path
        assert latest.loc[line, "last_frame_at"] == parse_utc(last)
    since = seed.t0 + timedelta(hours=40)
    stats = queries.live_stats(engine, since=since).set_index("line_id")
    for line_id in seed.line_ids.values():
        frames, defects = con.execute(
            "SELECT SUM(status='ok'), SUM(n_defects) FROM frames WHERE line_id=? AND processed_at>=?",
            (line_id, sqlite_time(since)),
        ).fetchone()
        assert (stats.loc[line_id, "frames"], stats.loc[line_id, "defects"]) == (frames, defects)
    assert list(queries.latest_frames(engine, line_ids=(seed.line_ids["L2"],))["line"]) == ["L2"]
    gaps = queries.recent_gaps(engine, since=seed.t0 + timedelta(hours=44, minutes=11))
    assert list(gaps[["line", "seconds", "reason"]].itertuples(index=False, name=None)) == [
        ("L2", 120.0, "camera disconnected")
    ]
    assert queries.recent_gaps(engine, since=seed.t0 + timedelta(hours=45)).empty
    assert queries.recent_gaps(engine, since=seed.t0, line_ids=(seed.line_ids["L1"],)).empty


def test_frame_boxes_are_the_new_defects_and_those_carried_over(engine, seeded_url: str) -> None:
    con = sqlite_db(seeded_url)
    frame_id, source, seq = con.execute(
        "SELECT id, source, seq FROM frames WHERE image_path IS NOT NULL ORDER BY id LIMIT 1"
    ).fetchone()
    with con:
        con.execute(
            "UPDATE defects SET last_frame_seq = ? WHERE frame_id IN "
            "(SELECT id FROM frames WHERE source = ? AND seq IN (?, ?))",
            (seq, source, seq - 2, seq - 1),
        )
    new = [i for (i,) in con.execute("SELECT id FROM defects WHERE frame_id = ? ORDER BY id", (frame_id,))]
    carried = [
        i
        for (i,) in con.execute(
            "SELECT d.id FROM defects d JOIN frames f ON f.id = d.frame_id "
            "WHERE f.source = ? AND f.seq < ? AND d.last_frame_seq >= ? ORDER BY d.id",
            (source, seq, seq),
        )
    ]
    assert carried
    boxes = queries.frame_boxes(engine, frame_id)
    assert list(boxes["id"]) == new + carried
    assert list(boxes["carried_over"]) == [False] * len(new) + [True] * len(carried)
    assert queries.frame_boxes(engine, 10**9).empty
