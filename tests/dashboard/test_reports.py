"""Grades on the pages and the printable coil and shift reports (issue 16 item 13), against SQL."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from dashboard.config import load_dashboard_config
from dashboard.data import PageContext
from dashboard.filters import FilterOptions, Filters
from dashboard.report_data import coil_report, shift_report
from tests.dashboard.conftest import Seed
from tests.dashboard.pagekit import page_metrics, page_table, run_page, sql

pytestmark = pytest.mark.usefixtures("clear_streamlit_caches")
RULES = {
    "grades": ["A", "B", "scrap"],
    "rules": [
        {"grade": "scrap", "classes": ["scratches"], "min_score": 0.9, "max_count": 0},
        {"grade": "B", "max_per_100m": 20.0},
    ],
}


def test_overview_and_coil_map_show_the_stored_grades(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url, grading=RULES, default_time_range="All time")
    run_page(at)  # a writable dashboard grades the closed coils it has not graded yet
    stored = dict(sql(seeded_url, "SELECT grade, COUNT(*) FROM coil_grades GROUP BY 1"))
    ((inspected,),) = sql(seeded_url, "SELECT COUNT(DISTINCT coil_id) FROM frames WHERE status='ok'")
    assert sum(stored.values()) == 1  # C100, the closed coil
    m = page_metrics(at)
    assert {g: m[f"Grade {g}"] for g in ("A", "B", "scrap")} == {
        g: stored.get(g, 0) for g in ("A", "B", "scrap")
    }
    assert m["Not graded (open)"] == inspected - sum(stored.values())
    table = page_table(at, "overview_grades")
    ((grade, ended),) = sql(
        seeded_url,
        "SELECT g.grade, c.ended_at FROM coil_grades g JOIN coils c ON c.id = g.coil_id WHERE c.id = ?",
        (seed.coil_ids["C100"],),
    )
    assert list(table["code"]) == ["C100"] and list(table["grade"]) == [grade]
    assert str(table["ended_at"].iloc[0])[:16] == ended[:16]  # the plant is on UTC here

    run_page(at, "coil_map")
    at.selectbox(key="coil_pick").set_value(seed.coil_ids["C100"])
    run_page(at)
    assert page_metrics(at)["Grade"] == grade
    at.selectbox(key="coil_pick").set_value(seed.coil_ids["C101"])
    run_page(at)
    assert page_metrics(at)["Grade"] is None and page_metrics(at)["Coil length"] == "open"


def test_a_read_only_dashboard_grades_nothing(make_app, seeded_url: str) -> None:
    run_page(make_app(seeded_url, grading=RULES, read_only=True))
    assert sql(seeded_url, "SELECT COUNT(*) FROM coil_grades") == [(0,)]


class _Report(HTMLParser):
    """What the tests read back from a report: table cells, image sources, links, map dots."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.images: list[str] = []
        self.urls: list[str] = []
        self.circles = 0
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("td", "th"):
            self._in_cell = True
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "circle":
            self.circles += 1
        for key in ("src", "href"):
            if values.get(key):
                self.urls.append(values[key] or "")

    def handle_data(self, data: str) -> None:
        if self._in_cell and data.strip():
            self.cells.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False


def _context(url: str, **config: object) -> PageContext:
    cfg = load_dashboard_config(None, db_url=url).model_copy(update=config)
    return PageContext(config=cfg, filters=Filters(), options=FilterOptions())


def _parse(html: str) -> _Report:
    report = _Report()
    report.feed(html)
    assert report.urls == [u for u in report.urls if u.startswith("data:")]  # nothing fetched when printed
    return report


def test_the_coil_report_holds_the_coil_s_figures(seeded_url: str, seed: Seed, tmp_path) -> None:
    coil_id = seed.coil_ids["C200"]
    ctx = _context(seeded_url, report_crops=5)
    html = coil_report(ctx, coil_id)
    report = _parse(html)
    pareto = sql(
        seeded_url,
        "SELECT class_name, COUNT(*) FROM defects WHERE coil_id=? GROUP BY 1 ORDER BY 2 DESC, 1",
        (coil_id,),
    )
    cells = report.cells
    for name, n in pareto:
        assert cells[cells.index(name) + 1] == f"{n:,}"
    ((placed,),) = sql(
        seeded_url,
        "SELECT COUNT(*) FROM defects WHERE coil_id=? AND position_m IS NOT NULL AND cross_m IS NOT NULL",
        (coil_id,),
    )
    assert report.circles == placed
    assert len(report.images) == 5 and all(src.startswith("data:image/png;base64,") for src in report.images)
    ((total,),) = sql(seeded_url, "SELECT COUNT(*) FROM defects WHERE coil_id=?", (coil_id,))
    assert f"{total} defect(s)" in html and "Coil report L2 / C200" in html
    assert "operator side" in html and "drive side" in html and "length 500.0 m" in html
    (tmp_path / "coil.html").write_text(html, encoding="utf-8")


def test_the_shift_report_covers_the_shift_s_frames_and_coils(seeded_url: str, seed: Seed) -> None:
    start = seed.t0 + timedelta(hours=20)
    end = start + timedelta(hours=8)
    html = shift_report(_context(seeded_url), start, end)
    report = _parse(html)
    lo, hi = (t.replace(tzinfo=None).isoformat(sep=" ") for t in (start, end))
    ((frames, coils),) = sql(
        seeded_url,
        "SELECT COUNT(*), COUNT(DISTINCT coil_id) FROM frames "
        "WHERE status='ok' AND processed_at >= ? AND processed_at < ?",
        (lo, hi),
    )
    ((defects,),) = sql(
        seeded_url, "SELECT COUNT(*) FROM defects WHERE created_at >= ? AND created_at < ?", (lo, hi)
    )
    figures = dict(zip(report.cells[:5], report.cells[5:10], strict=True))
    assert (figures["Frames inspected"], figures["Coils"], figures["Defects"]) == (
        f"{frames:,}",
        f"{coils:,}",
        f"{defects:,}",
    )
    assert len(re.findall(r"<h2>Coil ", html)) == coils == 3  # C100 ends and C101 starts in this shift


def test_maps_name_the_surface_the_line_s_camera_sees(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url, line_surface={"L2": "bottom"}, cross_zero_side="drive")
    run_page(at)
    run_page(at, "coil_map")
    at.selectbox(key="coil_pick").set_value(seed.coil_ids["C200"])
    run_page(at)
    assert any("The bottom surface of the strip" in c.value for c in at.caption)
    at.selectbox(key="coil_pick").set_value(seed.coil_ids["C100"])  # L1: not said
    run_page(at)
    assert not any("surface of the strip" in c.value for c in at.caption)
    html = coil_report(
        _context(seeded_url, line_surface={"L2": "bottom"}, cross_zero_side="drive"), seed.coil_ids["C200"]
    )
    assert "bottom surface" in html and html.index("drive side") < html.index(
        "operator side"
    )  # 0 = drive, on top


def test_the_coil_map_and_report_show_top_and_bottom_from_the_frames(
    make_app, seeded_url: str, seed: Seed
) -> None:
    """The surface comes from the data (each frame's ``surface``), not from the dashboard's settings:
    before, the map named at most the one surface configured for the line."""
    coil_id = seed.coil_ids["C200"]
    sql(
        seeded_url,
        "UPDATE frames SET surface = CASE WHEN id % 2 = 0 THEN 'top' ELSE 'bottom' END WHERE coil_id = ?",
        (coil_id,),
    )
    counts = dict(
        sql(
            seeded_url,
            "SELECT f.surface, COUNT(*) FROM defects d JOIN frames f ON f.id = d.frame_id "
            "WHERE d.coil_id = ? AND d.position_m IS NOT NULL AND d.cross_m IS NOT NULL GROUP BY f.surface",
            (coil_id,),
        )
    )
    assert set(counts) == {"top", "bottom"}
    at = make_app(seeded_url, line_surface={"L2": "bottom"})  # the settings say bottom only: the data wins
    run_page(at)
    run_page(at, "coil_map")
    at.selectbox(key="coil_pick").set_value(coil_id)
    run_page(at)
    assert [h.value for h in at.subheader] == ["Top surface", "Bottom surface"]
    points = page_table(at, "coil_table")
    assert points["surface"].value_counts().to_dict() == counts
    assert not any("from the settings" in c.value for c in at.caption)

    html = coil_report(_context(seeded_url, line_surface={"L2": "bottom"}), coil_id)
    maps = html.split("<svg")[1:]
    assert len(maps) == 2 and "top surface" in maps[0] and "bottom surface" in maps[1]
    assert [_parse("<svg" + m).circles for m in maps] == [counts["top"], counts["bottom"]]
