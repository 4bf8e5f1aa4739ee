"""An ``anomaly`` defect keeps its evidence: the anomaly map's heat-map crop beside its crop, its path in
``defects.map_path``, shown in the dashboard gallery's enlarged view. Checked on a real daemon run of
NEU-DET validation images with the shipped bundle and its anomaly model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.settings import REPO_ROOT
from inspection.stages.anomaly_evidence import (
    THRESHOLD_LEVEL,
    frame_map,
    frame_map_u8,
    map_crop_path,
)
from inspection.storage.paths import crop_window
from tests.inspection.daemon_fixtures import query, run_cli, sqlite_db, strip_spec

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
LOW_SHARE = 0.2  # of the shipped model's calibrated threshold: a few regions no detection explains


def test_the_frame_map_puts_the_threshold_at_one_level_and_keeps_the_larger_of_overlapping_tiles():
    left = np.full((4, 4), 10.0, np.float32)
    right = np.full((4, 4), 30.0, np.float32)
    amap = frame_map_u8(frame_map([left, right], [(0, 0), (2, 0)], (4, 6)), threshold=10.0)
    assert amap.shape == (4, 6) and amap.dtype == np.uint8
    assert (amap[:, :2] == THRESHOLD_LEVEL).all()  # the threshold itself
    assert (amap[:, 2:] == 255).all()  # three times the threshold saturates; overlap takes the maximum


def test_a_tile_reaching_past_a_small_frame_is_cut_to_the_frame():
    amap = frame_map_u8(frame_map([np.full((8, 8), 5.0, np.float32)], [(0, 0)], (3, 5)), threshold=5.0)
    assert amap.shape == (3, 5) and (amap == THRESHOLD_LEVEL).all()


def test_the_crop_window_is_the_box_plus_the_margin_inside_the_frame():
    assert crop_window((2, 3, 20, 30), (100, 100)) == (0, 0, 28, 38)
    assert crop_window((90, 95, 99, 99), (100, 100)) == (82, 87, 100, 100)
    assert crop_window((50, 50, 50, 50), (40, 40)) is None


@pytest.mark.slow
def test_a_daemon_run_stores_each_anomaly_defects_map_crop_and_the_gallery_shows_it(tmp_path, monkeypatch):
    if not (SHIPPED / "anomaly" / "anomaly.json").is_file():
        pytest.skip("shipped bundle has no anomaly model")
    low = LOW_SHARE * json.loads((SHIPPED / "anomaly" / "anomaly.json").read_text())["threshold"]["score"]
    db = sqlite_db(tmp_path)
    source = strip_spec(across=2, along=4)
    args = ["--once", "--json", "--db", db, "--model", str(SHIPPED), "--source", source]
    sets = [f"output.dir={tmp_path / 'out'}", "detector.threads=1", f"anomaly.threshold={low}"]
    result = run_cli(*args, *[x for s in sets for x in ("--set", s)])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rows = query(db, "SELECT id, class_name, crop_path, map_path FROM defects ORDER BY id")
    anomalies = [r for r in rows if r[1] == "anomaly"]
    assert len(anomalies) == summary["per_class"]["anomaly"] >= 1
    assert all(r[3] is None for r in rows if r[1] != "anomaly")  # detector classes have no map
    for _, _, crop_file, map_file in anomalies:
        assert Path(map_file) == map_crop_path(crop_file) and Path(map_file).is_file()
        crop, heat = cv2.imread(crop_file, cv2.IMREAD_UNCHANGED), cv2.imread(map_file, cv2.IMREAD_COLOR)
        assert heat.shape[:2] == crop.shape[:2]  # the same pixels as the defect crop
        b, g, r = (heat[..., i].astype(int) for i in range(3))
        # green (JET at the threshold's level 128) or warmer somewhere: the region that made the defect
        assert max((g - b).max(), (r - b).max()) > 60

    # The dashboard's enlarged view draws it (the media root is the database's folder).
    from streamlit.testing.v1 import AppTest

    cfg = tmp_path / "dashboard.yaml"
    cfg.write_text(yaml.safe_dump({"db_url": db, "page_size": 60}), encoding="utf-8")
    monkeypatch.setenv("STEEL_DASHBOARD_CONFIG", str(cfg))
    monkeypatch.delenv("STEEL_DASHBOARD_DB", raising=False)
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "app.py"), default_timeout=90)
    at.run()
    at.switch_page("views/gallery.py")
    at.run()
    captions = _image_captions(at, f"gallery_enlarge_{anomalies[0][0]}")
    assert any(c.startswith("anomaly map") for c in captions), captions
    captions = _image_captions(at, f"gallery_enlarge_{next(r[0] for r in rows if r[1] != 'anomaly')}")
    assert not any(c.startswith("anomaly map") for c in captions), captions


def _image_captions(at, button_key: str) -> list[str]:
    at.button(key=button_key).click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return [caption for image in at.get("image") for caption in image.captions]
