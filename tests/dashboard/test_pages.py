"""Every dashboard page through ``streamlit.testing.v1.AppTest`` on seeded databases.

The numbers a page shows are compared with numbers computed here with plain SQL on the same file;
changing a sidebar filter must change them accordingly; a review written on the Review page must appear
as a row of ``reviews``; an empty database and a one-class database must render their empty states.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from PIL import Image
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from dashboard.auth import hash_password
from dashboard.ui import parse_number
from tests.dashboard.conftest import APP, Seed

pytestmark = pytest.mark.usefixtures("clear_streamlit_caches")
PAGES = ("overview", "trends", "pareto", "coil_map", "gallery", "review", "models", "live")


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``make_app(url, **config) -> AppTest`` with the app's config and database set like the CLI does."""

    def make(url: str, **config: object) -> AppTest:
        cfg = tmp_path / "dashboard.yaml"
        cfg.write_text(yaml.safe_dump({"db_url": url, **config}), encoding="utf-8")
        monkeypatch.setenv("STEEL_DASHBOARD_CONFIG", str(cfg))
        monkeypatch.delenv("STEEL_DASHBOARD_DB", raising=False)
        return AppTest.from_file(str(APP), default_timeout=60)

    return make


def _sql(url: str, query: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(make_url(url).database) as con:
        return con.execute(query, args).fetchall()


def _run(at: AppTest, page: str | None = None) -> AppTest:
    if page is not None:
        at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metrics(at: AppTest) -> dict[str, float | str | None]:
    """Metric values as numbers where they are numbers (``L1`` stays text)."""
    out: dict[str, float | str | None] = {}
    for m in at.metric:
        try:
            out[m.label] = parse_number(m.value)
        except ValueError:
            out[m.label] = m.value
    return out


TABLES = {  # a table of each page, told apart by its columns (AppTest does not report st.dataframe keys)
    "overview_table": ("class_name", "per_1000_frames"),
    "trend_table": ("bucket_start", "per_1000_frames"),
    "trend_signals": ("bucket_start", "rules"),
    "pareto_table": ("class_name", "cumulative_pct"),
    "coil_table": ("position_m", "cross_m"),
    "gallery_table": ("id", "review_verdict"),
    "review_table": ("review_id", "reviewer"),
    "models_table": ("version", "is_active"),
    "models_usage": ("model_version", "frames"),
    "models_runs": ("status", "decision_reason"),
    "live_gaps": ("started_at", "reason"),
}


def _table(at: AppTest, name: str):
    tables = [d.value for d in at.dataframe]
    matches = [t for t in tables if set(TABLES[name]) <= set(t.columns)]
    assert matches, f"no table {name!r} on the page (tables: {[list(t.columns) for t in tables]})"
    return matches[0]


def _overview_sql(url: str, where_frames: str = "1=1", where_defects: str = "1=1", args=(), dargs=()):
    frames, metres = _sql(
        url, f"SELECT COUNT(*), TOTAL(length_m) FROM frames WHERE status='ok' AND {where_frames}", args
    )[0]
    per_class = dict(
        _sql(url, f"SELECT class_name, COUNT(*) FROM defects WHERE {where_defects} GROUP BY 1", dargs)
    )
    return frames, metres, per_class


def test_overview_shows_the_sql_numbers(make_app, seeded_url: str) -> None:
    at = _run(make_app(seeded_url))
    assert at.title[0].value == "Overview"
    frames, metres, per_class = _overview_sql(seeded_url)
    defects = sum(per_class.values())
    m = _metrics(at)
    assert m["Frames inspected"] == frames and m["Metres inspected"] == pytest.approx(metres)
    assert m["Defects"] == defects
    assert m["Defects per 1,000 frames"] == pytest.approx(1000 * defects / frames, abs=0.005)
    assert m["Defects per 100 m"] == pytest.approx(100 * defects / metres, abs=0.005)
    table = _table(at, "overview_table")
    assert dict(zip(table["class_name"], table["defects"], strict=True)) == per_class
    assert at.warning[0].value.startswith("1 frame(s) failed and 1 were dropped")
    assert at.get("download_button")  # CSV of the table


def test_overview_filters_change_the_numbers(make_app, seeded_url: str, seed: Seed) -> None:
    at = _run(make_app(seeded_url))
    l2 = seed.line_ids["L2"]
    at.multiselect(key="flt_lines").set_value([l2])
    at.multiselect(key="flt_classes").set_value(["crazing", "scratches"])
    at.slider(key="flt_min_score").set_value(0.5)
    _run(at)
    frames, metres, per_class = _overview_sql(
        seeded_url,
        "line_id=?",
        "line_id=? AND class_name IN ('crazing','scratches') AND score >= 0.5",
        (l2,),
        (l2,),
    )
    m = _metrics(at)
    assert (m["Frames inspected"], m["Defects"]) == (frames, sum(per_class.values()))
    assert m["Metres inspected"] == pytest.approx(metres)
    assert set(_table(at, "overview_table")["class_name"]) == set(per_class) == {"crazing", "scratches"}

    # a custom range of one UTC day, and the period before it as the comparison
    day = (seed.t0 + timedelta(hours=24)).date()
    at.selectbox(key="flt_time").set_value("Custom range")
    _run(at)
    at.date_input(key="flt_days").set_value((day, day))
    _run(at)
    lo, hi = f"{day} 00:00:00", f"{day + timedelta(days=1)} 00:00:00"
    frames, _, per_class = _overview_sql(
        seeded_url,
        "line_id=? AND processed_at >= ? AND processed_at < ?",
        "line_id=? AND class_name IN ('crazing','scratches') AND score >= 0.5 "
        "AND created_at >= ? AND created_at < ?",
        (l2, lo, hi),
        (l2, lo, hi),
    )
    m = _metrics(at)
    assert (m["Frames inspected"], m["Defects"]) == (frames, sum(per_class.values()))
    table = _table(at, "overview_table")
    prev_lo = f"{day - timedelta(days=1)} 00:00:00"
    before = dict(
        _sql(
            seeded_url,
            "SELECT class_name, COUNT(*) FROM defects WHERE line_id=? "
            "AND class_name IN ('crazing','scratches') AND score >= 0.5 "
            "AND created_at >= ? AND created_at < ? GROUP BY 1",
            (l2, prev_lo, lo),
        )
    )
    assert dict(zip(table["class_name"], table["previous_period"], strict=True)) == {
        c: before.get(c, 0) for c in table["class_name"]
    }


def test_trends_table_and_control_chart(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    _run(at)
    _run(at, "trends")
    at.selectbox(key="trend_bucket").set_value("day")
    _run(at)
    rates = _table(at, "trend_table")
    per_day_class = {
        (d, c): n
        for d, c, n in _sql(
            seeded_url, "SELECT substr(created_at, 1, 10), class_name, COUNT(*) FROM defects GROUP BY 1, 2"
        )
    }
    shown = {
        (str(b)[:10], c): n
        for b, c, n in zip(rates["bucket_start"], rates["class_name"], rates["defects"], strict=True)
        if n
    }
    assert shown == per_day_class
    frames_per_day = dict(
        _sql(
            seeded_url,
            "SELECT substr(processed_at, 1, 10), COUNT(*) FROM frames WHERE status='ok' GROUP BY 1",
        )
    )
    assert {
        str(b)[:10]: n for b, n in zip(rates["bucket_start"], rates["frames"], strict=True)
    } == frames_per_day

    # hourly u-chart of scratches: the burst of line L2 is out of control
    at.selectbox(key="trend_bucket").set_value("hour")
    at.selectbox(key="trend_class").set_value("scratches")
    _run(at)
    signals = _table(at, "trend_signals")
    burst_hour = _sql(
        seeded_url,
        "SELECT substr(created_at, 1, 13) FROM defects WHERE class_name='scratches' "
        "GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 1",
    )[0][0]
    assert burst_hour in {str(b)[:13] for b in signals["bucket_start"]}
    assert "1" in ",".join(signals["rules"])
    assert any("out of control" in e.value for e in at.error)


def test_pareto_in_decreasing_order_and_follows_min_score(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    _run(at)
    _run(at, "pareto")
    expected = _sql(seeded_url, "SELECT class_name, COUNT(*) FROM defects GROUP BY 1 ORDER BY 2 DESC, 1")
    table = _table(at, "pareto_table")
    assert list(zip(table["class_name"], table["defects"], strict=True)) == expected
    at.slider(key="flt_min_score").set_value(0.9)
    _run(at)
    expected = _sql(
        seeded_url,
        "SELECT class_name, COUNT(*) FROM defects WHERE score >= 0.9 GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    table = _table(at, "pareto_table")
    assert list(zip(table["class_name"], table["defects"], strict=True)) == expected
    assert _metrics(at)["Defects"] == sum(n for _, n in expected)


def test_coil_map_shows_the_chosen_coil(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url)
    _run(at)
    _run(at, "coil_map")
    for code in ("C100", "C200"):
        coil_id = seed.coil_ids[code]
        at.selectbox(key="coil_pick").set_value(coil_id)
        _run(at)
        n = _sql(seeded_url, "SELECT COUNT(*) FROM defects WHERE coil_id=?", (coil_id,))[0][0]
        assert _metrics(at)["Defects"] == n
        points = _table(at, "coil_table")
        assert len(points) == n and set(points["id"]) == {
            i for (i,) in _sql(seeded_url, "SELECT id FROM defects WHERE coil_id=?", (coil_id,))
        }


def test_coil_map_switches_to_a_density_grid_for_big_coils(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url, coil_map_max_points=100)
    _run(at)
    _run(at, "coil_map")
    coil_id = seed.coil_ids["C200"]
    at.selectbox(key="coil_pick").set_value(coil_id)
    _run(at)
    n = _sql(seeded_url, "SELECT COUNT(*) FROM defects WHERE coil_id=?", (coil_id,))[0][0]
    assert n > 100
    grid = _table(at, "coil_table")
    assert (
        list(grid.columns) == ["position_m", "cross_m", "class_name", "defects"]
        and grid["defects"].sum() == n
    )


def test_gallery_pages_through_crops(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, page_size=8)
    _run(at)
    _run(at, "gallery")
    total = _sql(seeded_url, "SELECT COUNT(*) FROM defects")[0][0]
    assert any(f"{total:,} defects" in c.value for c in at.caption)
    assert len(at.get("image")) == 8  # one crop per defect on the page
    at.selectbox(key="gallery_sort").set_value("score_desc")
    _run(at)
    best = [i for (i,) in _sql(seeded_url, "SELECT id FROM defects ORDER BY score DESC, id DESC LIMIT 8")]
    assert list(_table(at, "gallery_table")["id"]) == best
    at.number_input(key="gallery_page").set_value(2)
    _run(at)
    second = [
        i for (i,) in _sql(seeded_url, "SELECT id FROM defects ORDER BY score DESC, id DESC LIMIT 8 OFFSET 8")
    ]
    assert list(_table(at, "gallery_table")["id"]) == second
    at.button(key=f"gallery_enlarge_{second[0]}").click()
    _run(at)  # the dialog draws the crop (the frame image was not kept for this defect)
    assert len(at.get("image")) >= 9


def test_review_writes_a_row_and_exports(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    _run(at)
    _run(at, "review")
    n_before = _sql(seeded_url, "SELECT COUNT(*) FROM reviews")[0][0]
    at.radio(key="review_state").set_value("unreviewed")
    at.selectbox(key="review_sort").set_value("oldest")
    _run(at)
    first = _sql(
        seeded_url,
        "SELECT id, class_name FROM defects WHERE id NOT IN (SELECT defect_id FROM reviews) "
        "ORDER BY created_at, id LIMIT 1",
    )[0]
    defect_id, old_class = first
    new_class = "pitted_surface"

    # no name: nothing is stored
    at.radio(key=f"verdict_{defect_id}").set_value("relabelled")
    at.selectbox(key=f"new_class_{defect_id}").set_value(new_class)
    at.button(key=f"FormSubmitter:review_form_{defect_id}-Save review").click()
    _run(at)
    assert any("Enter your name" in e.value for e in at.error)
    assert _sql(seeded_url, "SELECT COUNT(*) FROM reviews")[0][0] == n_before

    at.text_input(key="review_name").set_value("dora")
    at.radio(key=f"verdict_{defect_id}").set_value("relabelled")
    at.selectbox(key=f"new_class_{defect_id}").set_value(new_class)
    at.text_input(key=f"note_{defect_id}").set_value("edge crack")
    at.button(key=f"FormSubmitter:review_form_{defect_id}-Save review").click()
    _run(at)
    rows = _sql(
        seeded_url,
        "SELECT reviewer, verdict, old_class, new_class, note, reviewed_at FROM reviews WHERE defect_id=?",
        (defect_id,),
    )
    assert len(rows) == 1 and rows[0][:5] == ("dora", "relabelled", old_class, new_class, "edge crack")
    assert rows[0][5]  # when
    assert any(f"defect #{defect_id} relabelled" in s.value for s in at.success)
    assert _metrics(at)["Relabelled (latest verdict)"] == 2  # the seeded relabel and this one
    reviews = _table(at, "review_table")
    assert reviews.iloc[0]["reviewer"] == "dora" and len(reviews) == n_before + 1

    at.button(key="review_export").click()
    _run(at)
    assert any("4 image(s), 2 box(es)" in c.value for c in at.caption)  # 2 relabels; rejects are background
    assert [b for b in at.get("download_button") if "VoTT" in b.proto.label]


def test_models_page(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    _run(at)
    _run(at, "models")
    assert "Active model: **v2**" in at.success[0].value
    table = _table(at, "models_table")
    assert list(table["version"]) == ["v2", "v1"] and table.loc[1, "metric.per_class.crazing"] == 0.52
    usage = _table(at, "models_usage").set_index("model_version")
    for version, n in _sql(
        seeded_url,
        "SELECT m.version, COUNT(*) FROM defects d "
        "JOIN model_versions m ON m.id = d.model_version_id GROUP BY 1",
    ):
        assert usage.loc[version, "defects"] == n
    assert list(_table(at, "models_runs")["status"]) == ["promoted"]


def test_live_page_shows_the_latest_frame_of_each_line(
    make_app, seeded_url: str, tmp_path: Path, neu_images: list[Path]
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    Image.open(neu_images[3]).save(live / "L1.jpg")  # the daemon's live image of L1; none for L2
    at = make_app(seeded_url, live_dir=str(live))
    _run(at)
    _run(at, "live")
    assert [h.value for h in at.subheader] == ["L1", "L2", "Input gaps (last 24 h)"]
    images = at.get("image")
    assert len(images) == 2
    assert images[0].captions[0].startswith("live image")  # L1: the live file
    ((kept,),) = _sql(
        seeded_url,
        "SELECT seq FROM frames f JOIN lines l ON l.id = f.line_id "
        "WHERE l.name = 'L2' AND image_path IS NOT NULL",
    )
    assert images[1].captions[0].startswith(f"strip-sim:L2 #{kept} ")  # L2: the latest kept frame
    assert sum(1 for m in at.metric if m.label == "Last frame") == 2
    gaps = _table(at, "live_gaps")
    assert list(gaps["reason"]) == ["camera disconnected"] and list(gaps["seconds"]) == [120.0]


@pytest.mark.parametrize("page", PAGES)
def test_empty_database_renders_empty_states(make_app, empty_url: str, page: str) -> None:
    at = make_app(empty_url)
    _run(at)
    if page != "overview":
        _run(at, page)
    assert at.info, f"{page}: no empty-state message"
    assert not at.error


@pytest.mark.parametrize("page", PAGES)
def test_single_class_database_renders(make_app, single_class_url: str, page: str) -> None:
    at = make_app(single_class_url)
    _run(at)
    if page != "overview":
        _run(at, page)
    assert not at.error
    if page == "pareto":
        assert any("One class only: scratches" in c.value for c in at.caption)
    if page == "overview":
        assert list(_table(at, "overview_table")["class_name"]) == ["scratches"]


def test_missing_database_is_explained(make_app, tmp_path: Path) -> None:
    at = _run(make_app(f"sqlite:///{tmp_path / 'nothing.db'}"))
    assert "No inspection database" in at.error[0].value
    assert not (tmp_path / "nothing.db").exists()  # the dashboard never creates one


def test_login_when_auth_is_enabled(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, auth={"enabled": True, "users": {"qa": hash_password("s3cret!")}})
    _run(at)
    assert at.title[0].value == "Sign in" and not at.metric
    at.text_input(key="auth_name").set_value("qa")
    at.text_input(key="auth_password").set_value("wrong")
    at.button[0].click()
    _run(at)
    assert "wrong password" in at.error[0].value
    at.text_input(key="auth_password").set_value("s3cret!")
    at.button[0].click()
    _run(at)
    assert at.title[0].value == "Overview" and at.metric
    _run(at, "review")
    assert any("Reviewing as **qa**" in c.value for c in at.caption)


def test_read_only_dashboard_disables_reviews(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, read_only=True)
    _run(at)
    _run(at, "review")
    assert "read-only" in at.info[0].value
    assert all(b.disabled for b in at.button if b.proto.label == "Save review")


@pytest.mark.postgres
def test_every_page_on_postgresql_read_only(
    make_app, pg_url: str, neu_images: list[Path], tmp_path: Path
) -> None:
    """The same pages on PostgreSQL through read-only transactions (the dashboard's production role)."""
    from sqlalchemy import text

    from inspection.storage.db import make_engine, upgrade
    from tests.dashboard.conftest import seed_database

    upgrade(pg_url)
    seed_database(pg_url, images=neu_images, media=tmp_path / "crops")
    eng = make_engine(pg_url)
    with eng.connect() as conn:
        frames = conn.scalar(text("SELECT COUNT(*) FROM frames WHERE status = 'ok'"))
        defects = conn.scalar(text("SELECT COUNT(*) FROM defects"))
    eng.dispose()
    at = _run(make_app(pg_url, read_only=True))
    m = _metrics(at)
    assert (m["Frames inspected"], m["Defects"]) == (frames, defects)
    for page in PAGES[1:]:
        _run(at, page)
        assert not at.error, (page, [e.value for e in at.error])
