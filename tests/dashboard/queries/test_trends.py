"""Per-bucket trend counts against buckets computed by hand in Python."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from dashboard import queries
from dashboard.filters import Filters
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
