"""Plain-SQL helpers for the query tests, written independently of ``dashboard.queries``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import make_url

from dashboard.filters import Filters
from tests.dashboard.conftest import Seed


def sqlite_db(url: str) -> sqlite3.Connection:
    return sqlite3.connect(make_url(url).database)


def sqlite_time(t: datetime) -> str:
    """How the schema stores a time on SQLite (naive UTC text, 6 decimals)."""
    return t.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def where_sql(f: Filters, *, frames: bool) -> tuple[str, list]:
    """The WHERE clause of ``f`` in plain SQL, written independently of dashboard.queries."""
    time_col = "processed_at" if frames else "created_at"
    terms, args = ["1=1"], []
    if f.start:
        terms.append(f"{time_col} >= ?")
        args.append(sqlite_time(f.start))
    if f.end:
        terms.append(f"{time_col} < ?")
        args.append(sqlite_time(f.end))
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


def filter_cases(seed: Seed) -> list[Filters]:
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
