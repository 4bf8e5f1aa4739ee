"""What the page tests share: run an ``AppTest`` page, read its metrics and tables, query SQLite directly."""

from __future__ import annotations

import sqlite3

from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from dashboard.ui import parse_number


def sql(url: str, query: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(make_url(url).database) as con:
        return con.execute(query, args).fetchall()


def run_page(at: AppTest, page: str | None = None) -> AppTest:
    if page is not None:
        at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_metrics(at: AppTest) -> dict[str, float | str | None]:
    """Metric values as numbers where they are numbers (``L1`` stays text)."""
    out: dict[str, float | str | None] = {}
    for m in at.metric:
        try:
            out[m.label] = parse_number(m.value)
        except ValueError:
            out[m.label] = m.value
    return out


TABLES = {  # a table of each page, told apart by its columns (AppTest does not report st.dataframe keys)
    "overview_table": ("class_name", "share_pct", "per_100_m"),
    "trend_table": ("bucket_start", "class_name", "per_100_m"),
    "trend_signals": ("bucket_start", "rules"),
    "trend_chart_table": ("bucket_start", "partial", "centre"),
    "overview_grades": ("grade", "grade_reasons", "ended_at"),
    "models_precision": ("class_name", "precision", "validation_ap50"),
    "pareto_table": ("class_name", "cumulative_pct"),
    "coil_table": ("position_m", "cross_m"),
    "gallery_table": ("id", "review_verdict"),
    "review_table": ("review_id", "reviewer"),
    "models_table": ("version", "is_active"),
    "models_usage": ("model_version", "frames"),
    "models_runs": ("status", "decision_reason"),
    "models_activations": ("version", "previous_version", "kind", "forced"),
    "live_gaps": ("started_at", "reason"),
}


def page_table(at: AppTest, name: str):
    tables = [d.value for d in at.dataframe]
    matches = [t for t in tables if set(TABLES[name]) <= set(t.columns)]
    assert matches, f"no table {name!r} on the page (tables: {[list(t.columns) for t in tables]})"
    return matches[0]
