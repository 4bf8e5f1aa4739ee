"""The plant's time zone: every time the dashboard shows, its shifts, days and date axes are local.

The database stores aware UTC. Pages turn times into the plant's wall-clock time (an IANA zone such
as ``Europe/Berlin``, from ``plant_timezone`` in ``configs/dashboard.yaml``) only when they show them;
queries and the cache keep UTC. Charts get naive wall-clock times: Vega-Lite reads a time without an
offset as the browser's local time and draws it unchanged, so the axis shows the plant's clock
whatever zone the viewer's browser is in.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

# The time ranges the filters offer; here (no Streamlit) so validating the config does not load it.
ALL_TIME = "All time"
CUSTOM = "Custom range"
TIME_PRESETS: dict[str, timedelta | None] = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    ALL_TIME: None,
    CUSTOM: None,
}


def plant_zone(name: str) -> ZoneInfo:
    """The zone of an IANA name; ValueError naming it when the system's zone database lacks it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin, America/Chicago)"
        ) from None


def fmt_time(value: object, tz: tzinfo = UTC, fmt: str = "%Y-%m-%d %H:%M") -> str | None:
    """An aware time shown in ``tz`` with the zone's abbreviation; None for a missing one (NULL/NaT).

    SQL NULL reaches pages as ``None``, ``NaT`` or ``nan`` depending on the column: all read as missing,
    so a page never prints "None". A naive value is taken as UTC (how SQLite hands times back).
    """
    if not isinstance(value, datetime) or pd.isna(value):
        return None
    when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    local = when.astimezone(tz)
    return f"{local:{fmt}} {local.tzname()}"


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The aware UTC instant the plant's calendar day ``day`` begins."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def wall_to_utc(wall: datetime, tz: tzinfo) -> datetime:
    """The UTC instant of a plant wall-clock time (the earlier one when clocks go back)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def to_wall(values: pd.Series, tz: tzinfo) -> pd.Series:
    """Aware (or naive UTC) times as naive plant wall-clock times, for tables and chart axes."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.tz_convert(tz).dt.tz_localize(None)


def local_columns(df: pd.DataFrame, tz: tzinfo, columns: tuple[str, ...]) -> pd.DataFrame:
    """A copy of ``df`` with the named time columns in plant wall-clock time (missing columns skipped)."""
    out = df.copy()
    for col in columns:
        if col in out.columns and len(out):
            out[col] = to_wall(out[col], tz)
    return out


def zone_label(tz: tzinfo) -> str:
    """The zone's name for headings and axis titles (``Europe/Berlin``; ``UTC``)."""
    return str(getattr(tz, "key", None) or tz)


def recent_shifts(
    first: datetime, last: datetime, tz: tzinfo, shift_start_hour: int, *, limit: int = 90
) -> list[tuple[datetime, datetime, datetime]]:
    """The 8 h shifts that overlap ``[first, last]``, latest first: ``(wall start, UTC start, UTC end)``.

    Worked out on the plant's clock without reading the database (the shift report's choice list).
    """
    wall_last = last.astimezone(tz).replace(tzinfo=None)
    origin = shift_start_hour % 8
    start = wall_last.replace(minute=0, second=0, microsecond=0)
    start -= timedelta(hours=(start.hour - origin) % 8)
    out: list[tuple[datetime, datetime, datetime]] = []
    while len(out) < limit:
        utc_start, utc_end = wall_to_utc(start, tz), wall_to_utc(start + timedelta(hours=8), tz)
        if utc_end <= first:
            break
        out.append((start, utc_start, utc_end))
        start -= timedelta(hours=8)
    return out
