"""Defects and inspected frames per time bucket (hour, shift, day), for the Trends page's charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Connection,
    case,
    func,
    literal_column,
    select,
)

from dashboard.filters import Filters
from dashboard.localtime import plant_zone, wall_to_utc
from dashboard.queries.base import (
    Bind,
    connect,
    defect_conditions,
    epoch_s,
    frame_conditions,
)
from inspection.storage.schema import Defect, Frame

BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "shift": 8 * 3600, "day": 86400}
"""Nominal trend bucket sizes. Buckets follow the plant's clock: hours and days on local wall time,
8 h shifts starting at ``shift_start_hour`` local time (so a day with a clock change has one bucket of
7 or 9 h, and the hour repeated in autumn is one bucket of 2 h)."""

TREND_TIME_COLUMNS = ["bucket_start", "bucket_start_utc", "bucket_end_utc"]
SIZE_COLUMNS = {"min_width": "min", "max_width": "max", "min_height": "min", "max_height": "max"}
"""Frame size extremes per bucket: a per-frame rate is only offered when they give one size."""


def check_bucket(bucket: str) -> None:
    if bucket not in BUCKET_SECONDS:
        raise ValueError(f"unknown bucket {bucket!r}; expected one of {list(BUCKET_SECONDS)}")


def grain_s(tz: ZoneInfo) -> int:
    """The step SQL groups by before the buckets are formed in the plant's zone: an hour, or a quarter
    of an hour for zones off UTC by a fraction of an hour (e.g. Asia/Kolkata, +5:30)."""
    year = datetime.now(UTC).year
    offsets = {
        int((datetime(year, m, 1, tzinfo=UTC).astimezone(tz).utcoffset() or timedelta(0)).total_seconds())
        for m in (1, 4, 7, 10)
    }
    return 3600 if all(o % 3600 == 0 for o in offsets) else 900


SQLITE_HOUR_OF: dict[str, str] = {
    "defects.created_at": "CAST(strftime('%s', defects.created_at) AS INTEGER) / 3600",
    "frames.processed_at": "CAST(strftime('%s', frames.processed_at) AS INTEGER) / 3600",
}
"""The hour of a defect / frame exactly as migration 0005's SQLite indexes write it. Grouping a month of
defects by hour and class sorted every row (1.1 s a million defects on the shared bench machine); on
the indexed expression SQLite reads the index in order and sorts nothing. Written out as text because
SQLite uses an expression index only for the same expression: a bound ``3600`` or a ``BIGINT`` cast (what
:func:`epoch_s` renders) would not match."""


def _grain_index(column: Any, dialect: str, grain: int) -> ColumnElement[int]:
    indexed = SQLITE_HOUR_OF.get(f"{column.table.name}.{column.name}")
    if dialect == "sqlite" and grain == 3600 and indexed is not None:
        return literal_column(indexed)
    return epoch_s(column, dialect) // grain


def _grain_window(index: ColumnElement[int], f: Filters, grain: int) -> list[ColumnElement[bool]]:
    """The time window again, on the grain index: redundant with the window on the time column, but it
    lets SQLite read only the window's stretch of an hour index instead of all of it."""
    terms: list[ColumnElement[bool]] = []
    if f.start is not None:
        terms.append(index >= int(f.start.timestamp()) // grain)
    if f.end is not None:
        terms.append(index <= (int(f.end.timestamp()) - 1) // grain)
    return terms


def local_buckets(grain_starts: pd.Series, bucket: str, tz: ZoneInfo, shift_start_hour: int) -> pd.Series:
    """The local wall-clock start (naive) of the bucket each UTC grain start falls in.

    Done here, not in SQL: neither backend's date functions know the plant's daylight-saving rules the
    same way, and the grains are few (one per hour of the range).
    """
    wall = pd.to_datetime(grain_starts, utc=True).dt.tz_convert(tz).dt.tz_localize(None)
    if bucket == "hour":
        return wall.dt.floor("h")
    if bucket == "day":
        return wall.dt.floor("D")
    origin = pd.Timedelta(hours=shift_start_hour % 8)  # 8 h shifts: 24 h holds three, aligned on midnight
    return (wall - origin).dt.floor("8h") + origin


def _bucket_times(walls: pd.Series, bucket: str, tz: ZoneInfo) -> tuple[pd.Series, pd.Series]:
    """UTC start and end of each local bucket (wall-clock arithmetic, so clock changes are honoured).

    Worked out once per distinct bucket (a trend by class repeats each bucket once per class).
    """
    size = timedelta(seconds=BUCKET_SECONDS[bucket])
    starts, ends = {}, {}
    for wall in walls.drop_duplicates().dt.to_pydatetime():
        starts[wall] = wall_to_utc(wall, tz)
        ends[wall] = wall_to_utc(wall + size, tz)
    return walls.map(starts), walls.map(ends)


def _regroup(
    rows: list[tuple],
    columns: list[str],
    *,
    keys: list[str],
    bucket: str,
    tz: ZoneInfo,
    shift_start_hour: int,
    grain: int,
) -> pd.DataFrame:
    """Per-grain rows (first column the grain index) summed into local buckets, in time order."""
    df = pd.DataFrame(rows, columns=["grain", *columns])
    if df.empty:
        return pd.DataFrame(columns=[*TREND_TIME_COLUMNS, *columns])
    starts = pd.to_datetime(df["grain"].astype("int64") * grain, unit="s", utc=True)
    df["bucket_start"] = local_buckets(starts, bucket, tz, shift_start_hour)
    values = [c for c in columns if c not in keys]
    how = {c: SIZE_COLUMNS.get(c, "sum") for c in values}
    out = df.groupby(["bucket_start", *keys], sort=True)[values].agg(how).reset_index()
    out["bucket_start_utc"], out["bucket_end_utc"] = _bucket_times(out["bucket_start"], bucket, tz)
    return out[[*TREND_TIME_COLUMNS, *columns]]


def defect_trend(
    bind: Bind, f: Filters, *, bucket: str, shift_start_hour: int = 6, tz: str = "UTC"
) -> pd.DataFrame:
    """Defects per local bucket and class (empty buckets absent).

    Columns ``bucket_start`` (naive plant wall-clock time), ``bucket_start_utc``, ``bucket_end_utc``,
    ``class_name, defects``.
    """
    check_bucket(bucket)
    zone, grain = plant_zone(tz), grain_s(plant_zone(tz))
    with connect(bind) as conn:
        hour = _grain_index(Defect.created_at, conn.dialect.name, grain)
        idx = hour.label("g")
        rows = conn.execute(
            select(idx, Defect.class_name, func.count())
            .where(*defect_conditions(f), *_grain_window(hour, f, grain))
            .group_by(idx, Defect.class_name)
        ).all()
    df = _regroup(
        [(int(g), str(c), int(n)) for g, c, n in rows],
        ["class_name", "defects"],
        keys=["class_name"],
        bucket=bucket,
        tz=zone,
        shift_start_hour=shift_start_hour,
        grain=grain,
    )
    return df.astype({"defects": "int64"})


def frame_trend(
    bind: Bind, f: Filters, *, bucket: str, shift_start_hour: int = 6, tz: str = "UTC"
) -> pd.DataFrame:
    """Inspected units per local bucket: ``bucket_start`` (naive plant time), ``bucket_start_utc``,
    ``bucket_end_utc``, ``frames, metres, defects, frames_with_defects`` and the frame sizes' extremes
    (``SIZE_COLUMNS``).

    ``frames``/``metres`` count ok frames (the u-chart's units), ``defects`` the filtered defects and
    ``frames_with_defects`` the frames with at least one of them (the p-chart's nonconforming units).
    Buckets without inspected frames are absent: they are no sample.

    Without a class or score filter every defect of a frame counts, so the frames' own ``n_defects``
    answer in the same pass over the frames (the defects table, 2-3 times larger, is not read). A frame
    and its defects share one instant, so per-grain distinct frame counts add up.
    """
    check_bucket(bucket)
    zone, grain = plant_zone(tz), grain_s(plant_zone(tz))
    with connect(bind) as conn:
        frame_hour = _grain_index(Frame.processed_at, conn.dialect.name, grain)
        fidx = frame_hour.label("g")
        with_defects = func.sum(case((Frame.n_defects > 0, 1), else_=0))
        frames = conn.execute(
            select(
                fidx,
                func.count(),
                func.sum(Frame.length_m),
                func.sum(Frame.n_defects),
                with_defects,
                func.min(Frame.width),
                func.max(Frame.width),
                func.min(Frame.height),
                func.max(Frame.height),
            )  # fmt: skip
            .where(Frame.status == "ok", *frame_conditions(f), *_grain_window(frame_hour, f, grain))
            .group_by(fidx)
        ).all()
        if not f.classes and f.min_score <= 0:
            defects = {int(g): (int(nd or 0), int(nf or 0)) for g, _, _, nd, nf, *_ in frames}
        else:
            defects = _defects_per_grain(conn, f, grain)
    rows = [
        (int(g), int(n), float(m or 0.0), *defects.get(int(g), (0, 0)), *sizes)
        for g, n, m, _, _, *sizes in frames
    ]
    columns = ["frames", "metres", "defects", "frames_with_defects", *SIZE_COLUMNS]
    df = _regroup(
        rows, columns, keys=[], bucket=bucket, tz=zone, shift_start_hour=shift_start_hour, grain=grain
    )
    df["frames_with_defects"] = df[["frames_with_defects", "frames"]].min(axis=1)
    return df.astype({"frames": "int64", "defects": "int64", "frames_with_defects": "int64"})


def _defects_per_grain(conn: Connection, f: Filters, grain: int) -> dict[int, tuple[int, int]]:
    """Grain index -> (defects, distinct frames with one) for the filtered defects."""
    hour = _grain_index(Defect.created_at, conn.dialect.name, grain)
    idx = hour.label("g")
    return {
        int(g): (int(n), int(nf))
        for g, n, nf in conn.execute(
            select(idx, func.count(), func.count(Defect.frame_id.distinct()))
            .where(*defect_conditions(f), *_grain_window(hour, f, grain))
            .group_by(idx)
        )
    }
