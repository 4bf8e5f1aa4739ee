"""The plant's time zone on the pages (issue 16 item 11): local days, shifts, axes and every shown time.

Asia/Kolkata (+5:30, no daylight saving) makes every local day and shift differ from the UTC ones, and
SQLite's own ``date(t, '+330 minutes')`` gives the expected local dates independently of the dashboard.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.dashboard.conftest import Seed
from tests.dashboard.pagekit import page_metrics, page_table, run_page, sql

pytestmark = pytest.mark.usefixtures("clear_streamlit_caches")
ZONE, OFFSET = "Asia/Kolkata", "+330 minutes"


def test_a_custom_day_is_the_plant_s_calendar_day(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url, plant_timezone=ZONE)
    run_page(at)
    day = (seed.t0 + timedelta(hours=24)).date()
    at.selectbox(key="flt_time").set_value("Custom range")
    run_page(at)
    at.date_input(key="flt_days").set_value((day, day))
    run_page(at)
    ((frames,),) = sql(
        seeded_url,
        "SELECT COUNT(*) FROM frames WHERE status='ok' AND date(processed_at, ?) = ?",
        (OFFSET, str(day)),
    )
    ((defects,),) = sql(
        seeded_url, "SELECT COUNT(*) FROM defects WHERE date(created_at, ?) = ?", (OFFSET, str(day))
    )
    m = page_metrics(at)
    assert (m["Frames inspected"], m["Defects"]) == (frames, defects)
    assert any(
        c.value.startswith(f"From {day} 00:00 IST to {day + timedelta(days=1)} 00:00 IST") for c in at.caption
    )


def test_trend_days_and_shifts_are_local(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, plant_timezone=ZONE, shift_start_hour=6, default_time_range="All time")
    run_page(at)
    run_page(at, "trends")
    at.selectbox(key="trend_bucket").set_value("day")
    run_page(at)
    per_day = dict(
        sql(
            seeded_url,
            "SELECT date(processed_at, ?), COUNT(*) FROM frames WHERE status='ok' GROUP BY 1",
            (OFFSET,),
        )
    )
    rates = page_table(at, "trend_table")
    shown = rates.drop_duplicates("bucket_start")
    assert {str(b.date()): n for b, n in zip(shown["bucket_start"], shown["frames"], strict=True)} == per_day
    assert {(b.hour, b.minute) for b in shown["bucket_start"]} == {(0, 0)}  # local midnight, not 05:30
    at.selectbox(key="trend_bucket").set_value("shift")
    run_page(at)
    shifts = page_table(at, "trend_table")
    assert {b.hour for b in shifts["bucket_start"]} <= {6, 14, 22}
    assert shifts.drop_duplicates("bucket_start")["frames"].sum() == sum(per_day.values())
    assert any(f"plant's clock ({ZONE})" in c.value for c in at.caption)


def test_shown_times_carry_the_plant_zone(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, plant_timezone=ZONE)
    run_page(at)
    run_page(at, "models")
    ((activated,),) = sql(
        seeded_url,
        "SELECT strftime('%Y-%m-%d %H:%M', activated_at, ?) FROM model_versions WHERE is_active = 1",
        (OFFSET,),
    )
    assert f"since {activated} IST" in at.success[0].value
    run_page(at, "review")
    at.radio(key="review_state").set_value("all")
    at.selectbox(key="review_sort").set_value("newest")
    run_page(at)
    ((created,),) = sql(
        seeded_url, "SELECT strftime('%Y-%m-%d %H:%M', MAX(created_at), ?) FROM defects", (OFFSET,)
    )
    assert any(m.value.endswith(f"· {created} IST") for m in at.markdown)


def test_an_unknown_time_zone_is_a_config_error_naming_the_key(make_app, seeded_url: str) -> None:
    at = run_page(make_app(seeded_url, plant_timezone="Europe/Atlantis"))
    assert "plant_timezone" in at.error[0].value and "IANA" in at.error[0].value
