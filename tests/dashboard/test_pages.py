"""Every dashboard page through ``streamlit.testing.v1.AppTest`` on seeded databases.

The numbers a page shows are compared with numbers computed here with plain SQL on the same file;
changing a sidebar filter must change them accordingly; a review written on the Review page must appear
as a row of ``reviews``; an empty database and a one-class database must render their empty states.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import text

from dashboard.auth import hash_password
from inspection.storage.db import make_engine, upgrade
from inspection.storage.model_registry import activate_model
from inspection.storage.repository import Repository
from tests.dashboard.conftest import Seed, seed_database
from tests.dashboard.pagekit import page_metrics, page_table, run_page, sql

pytestmark = pytest.mark.usefixtures("clear_streamlit_caches")
PAGES = ("overview", "trends", "pareto", "coil_map", "gallery", "review", "models", "live")


def _overview_sql(url: str, where_frames: str = "1=1", where_defects: str = "1=1", args=(), dargs=()):
    frames, metres = sql(
        url, f"SELECT COUNT(*), TOTAL(length_m) FROM frames WHERE status='ok' AND {where_frames}", args
    )[0]
    per_class = dict(
        sql(url, f"SELECT class_name, COUNT(*) FROM defects WHERE {where_defects} GROUP BY 1", dargs)
    )
    return frames, metres, per_class


def test_overview_shows_the_sql_numbers(make_app, seeded_url: str) -> None:
    at = run_page(make_app(seeded_url))
    assert at.title[0].value == "Overview"
    frames, metres, per_class = _overview_sql(seeded_url)
    defects = sum(per_class.values())
    m = page_metrics(at)
    assert m["Frames inspected"] == frames and m["Metres inspected"] == pytest.approx(metres)
    assert m["Defects"] == defects
    ((width, height),) = sql(seeded_url, "SELECT DISTINCT width, height FROM frames WHERE status='ok'")
    per_frames = m[f"Defects per 1,000 frames ({width}×{height} px)"]  # the frame size is stated
    assert per_frames == pytest.approx(1000 * defects / frames, abs=0.005)
    assert m["Defects per 100 m"] == pytest.approx(100 * defects / metres, abs=0.005)
    ((coils,),) = sql(seeded_url, "SELECT COUNT(DISTINCT coil_id) FROM frames WHERE status='ok'")
    assert (m["Coils"], m["Defects per coil"]) == (coils, pytest.approx(defects / coils, abs=0.005))
    assert m["Defects per m²"] is None  # no strip width configured: no area
    table = page_table(at, "overview_table")
    assert dict(zip(table["class_name"], table["defects"], strict=True)) == per_class
    assert at.warning[0].value.startswith("1 frame(s) failed and 1 were dropped")
    assert at.get("download_button")  # CSV of the table


def test_overview_filters_change_the_numbers(make_app, seeded_url: str, seed: Seed) -> None:
    at = run_page(make_app(seeded_url))
    l2 = seed.line_ids["L2"]
    at.multiselect(key="flt_lines").set_value([l2])
    at.multiselect(key="flt_classes").set_value(["crazing", "scratches"])
    at.slider(key="flt_min_score").set_value(0.5)
    run_page(at)
    frames, metres, per_class = _overview_sql(
        seeded_url,
        "line_id=?",
        "line_id=? AND class_name IN ('crazing','scratches') AND score >= 0.5",
        (l2,),
        (l2,),
    )
    m = page_metrics(at)
    assert (m["Frames inspected"], m["Defects"]) == (frames, sum(per_class.values()))
    assert m["Metres inspected"] == pytest.approx(metres)
    assert set(page_table(at, "overview_table")["class_name"]) == set(per_class) == {"crazing", "scratches"}

    # a custom range of one UTC day, and the period before it as the comparison
    day = (seed.t0 + timedelta(hours=24)).date()
    at.selectbox(key="flt_time").set_value("Custom range")
    run_page(at)
    at.date_input(key="flt_days").set_value((day, day))
    run_page(at)
    lo, hi = f"{day} 00:00:00", f"{day + timedelta(days=1)} 00:00:00"
    frames, _, per_class = _overview_sql(
        seeded_url,
        "line_id=? AND processed_at >= ? AND processed_at < ?",
        "line_id=? AND class_name IN ('crazing','scratches') AND score >= 0.5 "
        "AND created_at >= ? AND created_at < ?",
        (l2, lo, hi),
        (l2, lo, hi),
    )
    m = page_metrics(at)
    assert (m["Frames inspected"], m["Defects"]) == (frames, sum(per_class.values()))
    table = page_table(at, "overview_table")
    prev_lo = f"{day - timedelta(days=1)} 00:00:00"
    before = dict(
        sql(
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
    run_page(at)
    run_page(at, "trends")
    at.selectbox(key="trend_bucket").set_value("day")
    run_page(at)
    rates = page_table(at, "trend_table")
    per_day_class = {
        (d, c): n
        for d, c, n in sql(
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
        sql(
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
    run_page(at)
    signals = page_table(at, "trend_signals")
    burst_hour = sql(
        seeded_url,
        "SELECT substr(created_at, 1, 13) FROM defects WHERE class_name='scratches' "
        "GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 1",
    )[0][0]
    assert burst_hour in {str(b)[:13] for b in signals["bucket_start"]}
    assert "1" in ",".join(signals["rules"])
    assert any("out of control" in e.value for e in at.error)


def test_pareto_in_decreasing_order_and_follows_min_score(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "pareto")
    expected = sql(seeded_url, "SELECT class_name, COUNT(*) FROM defects GROUP BY 1 ORDER BY 2 DESC, 1")
    table = page_table(at, "pareto_table")
    assert list(zip(table["class_name"], table["defects"], strict=True)) == expected
    at.slider(key="flt_min_score").set_value(0.9)
    run_page(at)
    expected = sql(
        seeded_url,
        "SELECT class_name, COUNT(*) FROM defects WHERE score >= 0.9 GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    table = page_table(at, "pareto_table")
    assert list(zip(table["class_name"], table["defects"], strict=True)) == expected
    assert page_metrics(at)["Defects"] == sum(n for _, n in expected)


def test_coil_map_shows_the_chosen_coil(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "coil_map")
    for code in ("C100", "C200"):
        coil_id = seed.coil_ids[code]
        at.selectbox(key="coil_pick").set_value(coil_id)
        run_page(at)
        n = sql(seeded_url, "SELECT COUNT(*) FROM defects WHERE coil_id=?", (coil_id,))[0][0]
        assert page_metrics(at)["Defects"] == n
        points = page_table(at, "coil_table")
        assert len(points) == n and set(points["id"]) == {
            i for (i,) in sql(seeded_url, "SELECT id FROM defects WHERE coil_id=?", (coil_id,))
        }


def test_coil_map_switches_to_a_density_grid_for_big_coils(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url, coil_map_max_points=100)
    run_page(at)
    run_page(at, "coil_map")
    coil_id = seed.coil_ids["C200"]
    at.selectbox(key="coil_pick").set_value(coil_id)
    run_page(at)
    n = sql(seeded_url, "SELECT COUNT(*) FROM defects WHERE coil_id=?", (coil_id,))[0][0]
    assert n > 100
    grid = page_table(at, "coil_table")
    assert (
        list(grid.columns) == ["position_m", "cross_m", "class_name", "surface", "defects"]
        and grid["defects"].sum() == n
    )


def test_gallery_pages_through_crops(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, page_size=8)
    run_page(at)
    run_page(at, "gallery")
    total = sql(seeded_url, "SELECT COUNT(*) FROM defects")[0][0]
    assert any(f"{total:,} defects" in c.value for c in at.caption)
    assert len(at.get("image")) == 8  # one crop per defect on the page
    at.selectbox(key="gallery_sort").set_value("score_desc")
    run_page(at)
    best = [i for (i,) in sql(seeded_url, "SELECT id FROM defects ORDER BY score DESC, id DESC LIMIT 8")]
    assert list(page_table(at, "gallery_table")["id"]) == best
    at.number_input(key="gallery_page").set_value(2)
    run_page(at)
    second = [
        i for (i,) in sql(seeded_url, "SELECT id FROM defects ORDER BY score DESC, id DESC LIMIT 8 OFFSET 8")
    ]
    assert list(page_table(at, "gallery_table")["id"]) == second
    at.button(key=f"gallery_enlarge_{second[0]}").click()
    run_page(at)  # the dialog draws the crop (the frame image was not kept for this defect)
    assert len(at.get("image")) >= 9


def test_review_writes_a_row_and_exports(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "review")
    n_before = sql(seeded_url, "SELECT COUNT(*) FROM reviews")[0][0]
    at.radio(key="review_state").set_value("unreviewed")
    at.selectbox(key="review_sort").set_value("oldest")
    run_page(at)
    first = sql(
        seeded_url,
        "SELECT id, class_name FROM defects WHERE id NOT IN (SELECT defect_id FROM reviews) "
        "ORDER BY created_at, id LIMIT 1",
    )[0]
    defect_id, old_class = first
    new_class = "pitted_surface"

    # no verdict is preselected, and the class list appears only for a relabel
    assert at.radio(key=f"verdict_{defect_id}").value is None
    assert not [s for s in at.selectbox if s.key == f"new_class_{defect_id}"]
    assert at.button(key=f"save_{defect_id}").disabled

    # no name: nothing is stored
    at.radio(key=f"verdict_{defect_id}").set_value("relabelled")
    run_page(at)
    at.selectbox(key=f"new_class_{defect_id}").set_value(new_class)
    at.button(key=f"save_{defect_id}").click()
    run_page(at)
    assert any("Enter your name" in e.value for e in at.error)
    assert sql(seeded_url, "SELECT COUNT(*) FROM reviews")[0][0] == n_before

    at.text_input(key="review_name").set_value("dora")
    at.radio(key=f"verdict_{defect_id}").set_value("relabelled")
    run_page(at)
    at.selectbox(key=f"new_class_{defect_id}").set_value(new_class)
    at.text_input(key=f"note_{defect_id}").set_value("edge crack")
    at.button(key=f"save_{defect_id}").click()
    run_page(at)
    rows = sql(
        seeded_url,
        "SELECT reviewer, verdict, old_class, new_class, note, reviewed_at FROM reviews WHERE defect_id=?",
        (defect_id,),
    )
    assert len(rows) == 1 and rows[0][:5] == ("dora", "relabelled", old_class, new_class, "edge crack")
    assert rows[0][5]  # when
    assert any(f"defect #{defect_id} relabelled" in s.value for s in at.success)
    assert page_metrics(at)["Relabelled (latest verdict)"] == 2  # the seeded relabel and this one
    reviews = page_table(at, "review_table")
    assert reviews.iloc[0]["reviewer"] == "dora" and len(reviews) == n_before + 1

    at.button(key="review_export").click()
    run_page(at)
    assert any("4 image(s), 2 box(es)" in c.value for c in at.caption)  # 2 relabels; rejects are background
    assert [b for b in at.get("download_button") if "VoTT" in b.proto.label]


def test_models_page(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "models")
    assert "Active model: **v2**" in at.success[0].value
    table = page_table(at, "models_table")
    assert list(table["version"]) == ["v2", "v1"] and table.loc[1, "metric.per_class.crazing"] == 0.52
    usage = page_table(at, "models_usage").set_index("model_version")
    for version, n in sql(
        seeded_url,
        "SELECT m.version, COUNT(*) FROM defects d "
        "JOIN model_versions m ON m.id = d.model_version_id GROUP BY 1",
    ):
        assert usage.loc[version, "defects"] == n
    assert list(page_table(at, "models_runs")["status"]) == ["promoted"]


def test_models_page_shows_every_activation_with_who_why_and_overrides(make_app, seeded_url: str) -> None:
    repo = Repository(seeded_url)
    with repo.transaction() as s:
        activate_model(s, "v1", promoted_by="alice", note="rollback after coil 17", kind="manual")
    with repo.transaction() as s:
        activate_model(s, "v2", promoted_by="bob", note="QA trial", kind="manual", forced=True)
    repo.dispose()
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "models")
    table = page_table(at, "models_activations")
    expected = sql(
        seeded_url,
        "SELECT version, previous_version, kind, actor, reason, forced FROM model_activations "
        "ORDER BY activated_at DESC, id DESC",
    )
    assert len(expected) >= 2
    got = table[["version", "previous_version", "kind", "actor", "reason", "forced"]]
    assert [
        tuple(None if pd.isna(x) else x for x in r) for r in got.itertuples(index=False)
    ] == [  # a first one has no previous
        (v, p, k, a, r, bool(f)) for v, p, k, a, r, f in expected
    ]
    assert (
        got.iloc[0]["forced"] and got.iloc[0]["version"] == "v2" and got.iloc[0]["previous_version"] == "v1"
    )
    assert any("overrode the retraining gate" in w.value for w in at.warning)


def test_live_page_shows_the_latest_frame_of_each_line(
    make_app, seeded_url: str, tmp_path: Path, neu_images: list[Path]
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    Image.open(neu_images[3]).save(live / "L1.jpg")  # the daemon's live image of L1; none for L2
    at = make_app(seeded_url, live_dir=str(live))
    run_page(at)
    run_page(at, "live")
    assert [h.value for h in at.subheader] == ["L1", "L2", "Input gaps (last 24 h)"]
    images = at.get("image")
    assert len(images) == 2
    assert images[0].captions[0].startswith("live image")  # L1: the live file
    ((kept,),) = sql(
        seeded_url,
        "SELECT seq FROM frames f JOIN lines l ON l.id = f.line_id "
        "WHERE l.name = 'L2' AND image_path IS NOT NULL",
    )
    assert images[1].captions[0].startswith(f"strip-sim:L2 #{kept} ")  # L2: the latest kept frame
    assert sum(1 for m in at.metric if m.label == "Last frame") == 2
    gaps = page_table(at, "live_gaps")
    assert list(gaps["reason"]) == ["camera disconnected"] and list(gaps["seconds"]) == [120.0]


@pytest.mark.parametrize("page", PAGES)
def test_empty_database_renders_empty_states(make_app, empty_url: str, page: str) -> None:
    at = make_app(empty_url)
    run_page(at)
    if page != "overview":
        run_page(at, page)
    assert at.info, f"{page}: no empty-state message"
    assert not at.error


@pytest.mark.parametrize("page", PAGES)
def test_single_class_database_renders(make_app, single_class_url: str, page: str) -> None:
    at = make_app(single_class_url)
    run_page(at)
    if page != "overview":
        run_page(at, page)
    assert not at.error
    if page == "pareto":
        assert any("One class only: scratches" in c.value for c in at.caption)
    if page == "overview":
        assert list(page_table(at, "overview_table")["class_name"]) == ["scratches"]


def test_missing_database_is_explained(make_app, tmp_path: Path) -> None:
    at = run_page(make_app(f"sqlite:///{tmp_path / 'nothing.db'}"))
    assert "No inspection database" in at.error[0].value
    assert not (tmp_path / "nothing.db").exists()  # the dashboard never creates one


def test_login_when_auth_is_enabled(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, auth={"enabled": True, "users": {"qa": hash_password("s3cret!")}})
    run_page(at)
    assert at.title[0].value == "Sign in" and not at.metric
    at.text_input(key="auth_name").set_value("qa")
    at.text_input(key="auth_password").set_value("wrong")
    at.button[0].click()
    run_page(at)
    assert "wrong password" in at.error[0].value
    at.text_input(key="auth_password").set_value("s3cret!")
    at.button[0].click()
    run_page(at)
    assert at.title[0].value == "Overview" and at.metric
    run_page(at, "review")
    assert any("Reviewing as **qa**" in c.value for c in at.caption)


def test_read_only_dashboard_disables_reviews(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url, read_only=True)
    run_page(at)
    run_page(at, "review")
    assert "read-only" in at.info[0].value
    assert all(b.disabled for b in at.button if b.proto.label == "Save review")
    assert at.button(key="bulk_confirm").disabled


@pytest.mark.postgres
def test_every_page_on_postgresql_read_only(
    make_app, pg_url: str, neu_images: list[Path], tmp_path: Path
) -> None:
    """The same pages on PostgreSQL through read-only transactions (the dashboard's production role)."""
    upgrade(pg_url)
    seed_database(pg_url, images=neu_images, media=tmp_path / "crops")
    eng = make_engine(pg_url)
    with eng.connect() as conn:
        frames = conn.scalar(text("SELECT COUNT(*) FROM frames WHERE status = 'ok'"))
        defects = conn.scalar(text("SELECT COUNT(*) FROM defects"))
    eng.dispose()
    at = run_page(make_app(pg_url, read_only=True))
    m = page_metrics(at)
    assert (m["Frames inspected"], m["Defects"]) == (frames, defects)
    for page in PAGES[1:]:
        run_page(at, page)
        assert not at.error, (page, [e.value for e in at.error])
