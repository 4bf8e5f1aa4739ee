"""Rates people compare (issue 16 item 12): per 100 m, per m² (with the strip width), per coil, and per
1,000 frames only when every frame has one size, which the page states."""

from __future__ import annotations

import pytest

from tests.dashboard.conftest import Seed
from tests.dashboard.pagekit import page_metrics, page_table, run_page, sql

pytestmark = pytest.mark.usefixtures("clear_streamlit_caches")


def test_per_square_metre_uses_each_line_s_strip_width(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url, strip_width_m={"L1": 1.2, "*": 1.5})
    run_page(at)
    by_line = dict(
        sql(
            seeded_url,
            "SELECT l.name, TOTAL(f.length_m) FROM frames f JOIN lines l ON l.id = f.line_id "
            "WHERE f.status='ok' GROUP BY 1",
        )
    )
    area = by_line["L1"] * 1.2 + by_line["L2"] * 1.5
    ((defects,),) = sql(seeded_url, "SELECT COUNT(*) FROM defects")
    assert page_metrics(at)["Defects per m²"] == pytest.approx(defects / area, abs=0.0005)
    table = page_table(at, "overview_table").set_index("class_name")
    per_class = dict(sql(seeded_url, "SELECT class_name, COUNT(*) FROM defects GROUP BY 1"))
    assert {c: pytest.approx(r["per_m2"]) for c, r in table.iterrows()} == {
        c: n / area for c, n in per_class.items()
    }


def test_frames_of_different_sizes_give_no_per_frame_rate(make_app, seeded_url: str) -> None:
    sql(seeded_url, "UPDATE frames SET width = 400 WHERE line_id = (SELECT id FROM lines WHERE name = 'L2')")
    at = make_app(seeded_url)
    run_page(at)
    m = page_metrics(at)
    assert m["Defects per 1,000 frames"] is None  # not "(200×200 px)": there is no one size
    assert "per_1000_frames" not in page_table(at, "overview_table").columns
    run_page(at, "trends")
    assert "u_frames" not in at.selectbox(key="trend_chart").options
    assert "per_1000_frames" not in page_table(at, "trend_table").columns


def test_one_strip_width_for_every_line(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, strip_width_m={"*": 1.5})
    run_page(at)
    ((metres, defects),) = sql(
        seeded_url,
        "SELECT (SELECT TOTAL(length_m) FROM frames WHERE status='ok'), (SELECT COUNT(*) FROM defects)",
    )
    assert page_metrics(at)["Defects per m²"] == pytest.approx(defects / (metres * 1.5), abs=0.0005)
