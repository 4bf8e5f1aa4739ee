"""Pages that said something wrong or misleading (issue 16, items 1-3 and 5-8), each checked through
``AppTest`` against SQL written here on the same database file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inspection.storage.db import default_sqlite_url, upgrade
from tests.dashboard.conftest import Seed, seed_database
from tests.dashboard.pagekit import page_table, run_page, sql

pytestmark = pytest.mark.usefixtures("clear_streamlit_caches")


def _ts(t: datetime) -> str:
    """A time as the schema stores it on SQLite (naive UTC text)."""
    return t.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def test_reviewed_defects_show_their_latest_review_without_nan(make_app, seeded_url: str) -> None:
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "review")
    at.radio(key="review_state").set_value("reviewed")
    run_page(at)
    latest = sql(
        seeded_url,
        "SELECT verdict, new_class, reviewer FROM reviews "
        "WHERE id IN (SELECT MAX(id) FROM reviews GROUP BY defect_id)",
    )
    expected = {f"Latest review: {v}{f' → {n}' if n else ''} by {who}" for v, n, who in latest}
    shown = {c.value for c in at.caption if c.value.startswith("Latest review:")}
    assert shown == expected
    assert {v for v, _, _ in latest} >= {"rejected", "relabelled"}
    assert not any("nan" in text or "None" in text for text in shown)


def _vott_download(at) -> list:
    return [b for b in at.get("download_button") if "VoTT" in b.proto.label]


def _export_counts(url: str, classes: tuple[str, ...] = ()) -> tuple[int, int]:
    """(images, boxes) of the VoTT export: one image per reviewed defect, a box unless rejected."""
    where = f"AND d.class_name IN ({','.join('?' * len(classes))})" if classes else ""
    rows = sql(
        url,
        "SELECT r.verdict FROM reviews r JOIN defects d ON d.id = r.defect_id "
        f"WHERE r.id IN (SELECT MAX(id) FROM reviews GROUP BY defect_id) {where}",
        classes,
    )
    return len(rows), sum(1 for (v,) in rows if v != "rejected")


def test_a_prepared_vott_export_goes_when_the_filters_or_the_reviews_change(
    make_app, seeded_url: str, seed: Seed
) -> None:
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "review")
    at.button(key="review_export").click()
    run_page(at)
    images, boxes = _export_counts(seeded_url)
    assert any(f"{images} image(s), {boxes} box(es)" in c.value for c in at.caption)
    assert _vott_download(at)

    (relabelled_class,) = sql(
        seeded_url, "SELECT old_class FROM reviews WHERE verdict = 'relabelled' LIMIT 1"
    )[0]
    at.multiselect(key="flt_classes").set_value([relabelled_class])
    run_page(at)
    assert not _vott_download(at)
    assert any("prepare it again" in c.value for c in at.caption)

    at.button(key="review_export").click()
    run_page(at)
    images, boxes = _export_counts(seeded_url, (relabelled_class,))
    assert any(f"{images} image(s), {boxes} box(es)" in c.value for c in at.caption)
    assert _vott_download(at)

    # another operator confirms a defect meanwhile: the zip in this session no longer has every review
    defect_id, old_class = sql(
        seeded_url,
        "SELECT id, class_name FROM defects WHERE class_name = ? ORDER BY id DESC",
        (relabelled_class,),
    )[0]
    sql(
        seeded_url,
        "INSERT INTO reviews (defect_id, reviewer, reviewed_at, verdict, old_class) VALUES (?, ?, ?, ?, ?)",
        (defect_id, "erin", _ts(datetime.now(UTC)), "confirmed", old_class),
    )
    run_page(at)
    assert not _vott_download(at)
    assert any("prepare it again" in c.value for c in at.caption)


def test_models_page_says_when_the_activation_time_is_unknown(make_app, seeded_url: str) -> None:
    sql(seeded_url, "UPDATE model_versions SET activated_at = NULL, promoted_by = NULL WHERE is_active = 1")
    at = make_app(seeded_url, cache_ttl_s=0)
    run_page(at)
    run_page(at, "models")
    ((version, name),) = sql(seeded_url, "SELECT version, name FROM model_versions WHERE is_active = 1")
    assert at.success[0].value == f"Active model: **{version}** ({name}), activation time not recorded."

    sql(
        seeded_url,
        "UPDATE model_versions SET activated_at = '2026-01-05 14:00:00.000000', promoted_by = 'qa' "
        "WHERE is_active = 1",
    )
    at = make_app(seeded_url, cache_ttl_s=0)
    run_page(at)
    run_page(at, "models")
    assert at.success[0].value.endswith("since 2026-01-05 14:00 UTC by qa.")


def _two_days(seed: Seed) -> tuple[datetime, datetime]:
    last = (seed.t0 + timedelta(hours=24)).date()
    start = datetime.combine(last - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return start, start + timedelta(days=2)


@pytest.fixture
def night_seed(tmp_path: Path, neu_images: list[Path]) -> tuple[str, Seed]:
    """The seeded frames from 01:00 on a fixed day: the last ones (22:00-22:30 the next day) lie in a night
    shift that midnight cuts, whatever the hour the test runs at (the shared seed starts 48 h before now,
    so between 00:00 and 01:00 its last frame fell at 21:30 and no shift was cut)."""
    url = default_sqlite_url(tmp_path / "night" / "inspection.db")
    upgrade(url)
    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    return url, seed_database(url, images=neu_images, media=tmp_path / "night" / "crops", t0=t0)


def test_partial_shifts_are_flagged_and_left_out_of_the_control_limits(
    make_app, night_seed: tuple[str, Seed]
) -> None:
    seeded_url, seed = night_seed
    at = make_app(seeded_url, shift_start_hour=6)
    run_page(at)
    run_page(at, "trends")
    start, end = _two_days(seed)
    at.selectbox(key="flt_time").set_value("Custom range")
    run_page(at)
    at.date_input(key="flt_days").set_value((start.date(), (end - timedelta(days=1)).date()))
    at.selectbox(key="trend_bucket").set_value("shift")
    at.selectbox(key="trend_chart").set_value("u_frames")
    run_page(at)
    table = page_table(at, "trend_chart_table")
    shift = timedelta(hours=8)
    starts = [b.to_pydatetime().replace(tzinfo=UTC) for b in table["bucket_start"]]
    expected = [b < start or b + shift > end for b in starts]
    assert list(table["partial"]) == expected
    assert expected[-1] and not all(expected)  # midnight cuts the 22:00-06:00 shift at the end

    # the centre: defects per 1,000 frames of the complete shifts only (06:00 day 1 to 22:00 day 2)
    lo, hi = _ts(start + timedelta(hours=6)), _ts(end - timedelta(hours=2))
    ((frames,),) = sql(
        seeded_url,
        "SELECT COUNT(*) FROM frames WHERE status='ok' AND processed_at >= ? AND processed_at < ?",
        (lo, hi),
    )
    ((defects,),) = sql(
        seeded_url, "SELECT COUNT(*) FROM defects WHERE created_at >= ? AND created_at < ?", (lo, hi)
    )
    assert table["centre"].iloc[0] == pytest.approx(1000.0 * defects / frames)
    assert not table.loc[table["partial"], "rules"].any()  # partial shifts break no run rule
    assert any("partial bucket" in c.value for c in at.caption)


def test_a_chart_of_one_sample_says_there_are_too_few_points(make_app, seeded_url: str, seed: Seed) -> None:
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "trends")
    day = (seed.t0 + timedelta(hours=24)).date()
    at.selectbox(key="flt_time").set_value("Custom range")
    run_page(at)
    at.date_input(key="flt_days").set_value((day, day))
    at.selectbox(key="trend_bucket").set_value("day")
    run_page(at)
    assert not any("within the limits" in s.value for s in at.success)
    assert any("Too few points" in i.value for i in at.info)
    assert len(page_table(at, "trend_chart_table")) == 1


def _line_ages(url: str) -> dict[str, timedelta]:
    now = datetime.now(UTC)
    return {
        name: now - datetime.fromisoformat(last).replace(tzinfo=UTC)
        for name, last in sql(
            url,
            "SELECT l.name, MAX(f.processed_at) FROM frames f JOIN lines l ON l.id = f.line_id GROUP BY 1",
        )
    }


def test_a_silent_line_is_a_warning_not_no_gaps(make_app, seeded_url: str) -> None:
    sql(seeded_url, "DELETE FROM source_gaps")  # the daemon recorded no gap, yet the lines have gone quiet
    at = make_app(seeded_url, live_silent_after_s=120)
    run_page(at)
    run_page(at, "live")
    silent = sorted(name for name, age in _line_ages(seeded_url).items() if age > timedelta(seconds=120))
    assert silent == ["L1", "L2"]  # the seeded lines stopped sending hours ago
    warnings = [w.value for w in at.warning if w.value.startswith("Silent")]
    assert len(warnings) == len(silent)
    gap_text = " ".join(c.value for c in at.caption)
    assert "without interruption" not in gap_text and f"but {len(silent)} line(s)" in gap_text

    longest = max(_line_ages(seeded_url).values())
    at = make_app(seeded_url, live_silent_after_s=longest.total_seconds() + 3600)
    run_page(at)
    run_page(at, "live")
    assert not [w for w in at.warning if w.value.startswith("Silent")]
    assert any("every line sent a frame" in c.value for c in at.caption)


def test_live_caption_counts_every_box_drawn_and_names_the_carried_over_ones(
    make_app, seeded_url: str, tmp_path
) -> None:
    ((frame_id, seq),) = sql(
        seeded_url,
        "SELECT f.id, f.seq FROM frames f JOIN lines l ON l.id = f.line_id "
        "WHERE l.name = 'L2' AND f.image_path IS NOT NULL",
    )
    # the tracker saw defects of the frames before again in the kept frame (overlapping frames)
    sql(
        seeded_url,
        "UPDATE defects SET last_frame_seq = ? WHERE frame_id IN "
        "(SELECT id FROM frames WHERE source = 'strip-sim:L2' AND seq BETWEEN ? AND ?)",
        (seq, seq - 4, seq - 1),
    )
    new = sql(seeded_url, "SELECT COUNT(*) FROM defects WHERE frame_id = ?", (frame_id,))[0][0]
    carried = sql(
        seeded_url,
        "SELECT d.id, d.class_name FROM defects d JOIN frames f ON f.id = d.frame_id "
        "WHERE f.source = 'strip-sim:L2' AND f.seq < ? AND d.last_frame_seq >= ? ORDER BY d.id",
        (seq, seq),
    )
    assert carried  # the update above really carried some over
    live = tmp_path / "no-live-images"
    live.mkdir()
    at = make_app(seeded_url, live_dir=str(live))
    run_page(at)
    run_page(at, "live")
    (caption,) = [i.captions[0] for i in at.get("image") if i.captions[0].startswith("strip-sim:L2")]
    assert caption.startswith(
        f"strip-sim:L2 #{seq} · {new + len(carried)} box(es) drawn: {new} new defect(s), "
        f"{len(carried)} carried over"
    )
    for defect_id, class_name in carried:
        assert f"#{defect_id} {class_name}" in caption


def test_review_precision_per_class_sits_beside_the_validation_ap(make_app, seeded_url: str) -> None:
    reviewed_classes = [c for (c,) in sql(seeded_url, "SELECT DISTINCT old_class FROM reviews ORDER BY 1")]
    per_class = {reviewed_classes[0]: {"ap50": 0.61, "ap": 0.3}}  # as training.evaluation stores it
    sql(
        seeded_url,
        "UPDATE model_versions SET metrics = ? WHERE is_active = 1",
        (json.dumps({"map50": 0.78, "per_class": per_class}),),
    )
    at = make_app(seeded_url)
    run_page(at)
    run_page(at, "models")
    expected = {
        name: (n, confirmed / n)
        for name, n, confirmed in sql(
            seeded_url,
            "SELECT d.class_name, COUNT(*), SUM(r.verdict = 'confirmed') FROM reviews r "
            "JOIN defects d ON d.id = r.defect_id "
            "WHERE r.id IN (SELECT MAX(id) FROM reviews GROUP BY defect_id) GROUP BY 1",
        )
    }
    table = page_table(at, "models_precision").set_index("class_name")
    assert {c: (int(r["reviewed"]), float(r["precision"])) for c, r in table.iterrows()} == expected
    assert table.loc[reviewed_classes[0], "validation_ap50"] == pytest.approx(0.61)
    ((metrics,),) = sql(seeded_url, "SELECT metrics FROM model_versions WHERE is_active = 1")
    per_class = json.loads(metrics).get("per_class", {})
    for name in table.index:
        ap = per_class.get(name)
        assert (ap is None and table.loc[name, "validation_ap50"] != table.loc[name, "validation_ap50"]) or (
            table.loc[name, "validation_ap50"] == pytest.approx(ap if isinstance(ap, float) else ap["ap50"])
        )
