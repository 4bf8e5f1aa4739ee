"""``steel calibrate``: thresholds for a false-alarm budget on clean frames, a new promotable bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets.background import BackgroundRule, select_clean_tiles, write_tiles
from datasets.detections import Detections
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT
from inspection.calibration import alarms_per_1000, class_thresholds
from inspection.calibration_budget import StripGeometry
from inspection.cli import app

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
NAMES = ["a", "b"]


def _dets(scores_labels: list[tuple[float, int]]) -> Detections:
    n = len(scores_labels)
    return Detections(
        np.tile(np.array([[0, 0, 10, 10]], np.float32), (n, 1)),
        np.array([s for s, _ in scores_labels], np.float32),
        np.array([c for _, c in scores_labels], np.int64),
    )


@pytest.mark.parametrize(
    ("budget", "expected_a", "expected_b"),
    [
        (0.0, np.nextafter(np.float32(0.9), np.float32(1)), 0.25),  # no alarm at all: above the top score
        (2000.0, np.nextafter(np.float32(0.6), np.float32(1)), 0.25),  # 1 of 1 tile per class: second score
    ],
)
def test_each_class_threshold_holds_its_share_of_the_budget(budget, expected_a, expected_b):
    dets = [_dets([(0.9, 0), (0.6, 0), (0.3, 0)])]  # one clean tile, three 'a' boxes, no 'b'
    thresholds = class_thresholds(dets, NAMES, budget_per_1000=budget, floor=0.25)
    assert thresholds == {"a": pytest.approx(float(expected_a)), "b": expected_b}
    assert alarms_per_1000(dets, thresholds, NAMES) <= budget


def test_a_threshold_never_drops_below_the_operating_point():
    dets = [_dets([(0.1, 0)]) for _ in range(10)]
    assert class_thresholds(dets, NAMES, budget_per_1000=0.0, floor=0.25)["a"] == 0.25


def clean_tiles_of(neu_root: Path, tmp_path: Path, class_name: str, *, every: int) -> Path:
    """Clean tiles from every ``every``-th NEU image of ``class_name`` (skips without the shipped model)."""
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("shipped bundle models/neu-yolo-n not present")
    aset = read_dataset(neu_root / "annotations")
    subset = aset.subset([im.name for im in aset.images if im.name.startswith(class_name)][::every])
    tiles = tmp_path / "tiles"
    write_tiles(select_clean_tiles(subset, BackgroundRule()), subset, tiles)
    return tiles


@pytest.mark.slow
def test_calibrate_writes_a_registered_bundle_that_steel_models_activate_promotes(neu_root, tmp_path):
    tiles = clean_tiles_of(neu_root, tmp_path, "scratches", every=20)
    model = tmp_path / "model"
    shutil.copytree(SHIPPED, model)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    args = ["calibrate", "--clean", str(tiles / "canvas"), "--model", str(model), "--db", db]
    args += ["--registry", str(tmp_path / "registry"), "--budget", "100", "--version", "cal-test", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    thresholds = out["class_score_thresholds"]
    shipped = json.loads((SHIPPED / "manifest.json").read_text())["thresholds"]["per_class"]
    assert set(thresholds) == set(read_dataset(neu_root / "annotations").class_names)
    assert all(thresholds[n] >= shipped[n] for n in thresholds)  # never below the bundle's operating point
    assert out["detector_alarms_per_1000"]["after"] <= 100.0
    assert out["validation"]["neu_val"]["recall_after"] <= out["validation"]["neu_val"]["recall_before"]
    manifest = json.loads((tmp_path / "registry" / "cal-test" / "manifest.json").read_text())
    assert manifest["thresholds"]["per_class"] == thresholds  # what the detector and reject rule apply
    assert manifest["thresholds"]["calibration"]["class_score_thresholds"] == thresholds
    assert manifest["thresholds"]["score"] == min(thresholds.values())
    # the detection evidence level follows the line's own clean steel, at the shipped model's quantile
    level = json.loads((SHIPPED / "anomaly" / "anomaly.json").read_text())["threshold"]["detection_evidence"]
    written = json.loads((tmp_path / "registry" / "cal-test" / "anomaly" / "anomaly.json").read_text())
    assert out["anomaly"]["detection_evidence_before"] == pytest.approx(level)
    assert written["threshold"]["detection_evidence"] == pytest.approx(
        out["anomaly"]["detection_evidence_after"]
    )
    assert written["threshold"]["detection_evidence_quantile"] == 0.5
    res = CliRunner().invoke(app, ["models", "activate", "cal-test", "--db", db])
    assert res.exit_code == 0, res.output


def test_calibrate_names_a_folder_without_images(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "calibrate",
            "--clean",
            str(tmp_path),
            "--model",
            str(SHIPPED),
            "--db",
            f"sqlite:///{tmp_path}/d.db",
        ],
    )
    assert res.exit_code == 1
    assert f"{tmp_path}: no images" in res.output


def test_a_budget_per_100m_of_strip_becomes_the_per_1000_tiles_budget_of_the_frame_geometry():
    # 0.5 mm per line, 200-line tiles overlapping 40: a tile row every 80 mm, 1,250 rows in 100 m;
    # an 800 px frame cut into 200 px tiles overlapping 40: offsets 0, 160, 320, 480, 600 -> 5 across.
    geometry = StripGeometry(
        mm_per_line=0.5, mm_per_px=0.5, frame_width_px=800, tile_hw=(200, 200), overlap_hw=(40, 40)
    )
    assert geometry.tiles_across == 5 and geometry.tiles_per_100m == pytest.approx(6250.0)
    assert geometry.per_1000_tiles(2.0) == pytest.approx(0.32)  # 2 alarms in 6,250 tiles
    assert geometry.per_100m(geometry.per_1000_tiles(2.0)) == pytest.approx(2.0)
    assert geometry.to_dict()["strip_width_mm"] == 400.0
    with pytest.raises(ValueError, match="budget-per-100m"):
        geometry.per_1000_tiles(-1.0)


def test_both_budgets_at_once_exit_2_naming_them(tmp_path):
    args = [
        "calibrate",
        "--clean",
        str(tmp_path),
        "--model",
        str(SHIPPED),
        "--db",
        f"sqlite:///{tmp_path}/d.db",
    ]
    res = CliRunner().invoke(app, [*args, "--budget", "1", "--budget-per-100m", "2"])
    assert res.exit_code == 2 and "--budget-per-100m, not both" in res.output


@pytest.mark.slow
def test_calibrate_with_a_budget_per_100m_prints_and_stores_it_with_the_strip_geometry(neu_root, tmp_path):
    tiles = clean_tiles_of(neu_root, tmp_path, "inclusion", every=25)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    args = ["calibrate", "--clean", str(tiles / "canvas"), "--model", str(SHIPPED), "--db", db]
    args += ["--registry", str(tmp_path / "registry"), "--budget-per-100m", "5", "--version", "cal-100m"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    # configs/inspection.yaml: 0.5 mm per line, 200x200 tiles without overlap; the canvases are 200 px
    # wide: one tile across, a row every 100 mm -> 1,000 tiles per 100 m, 5 per 100 m = 5 per 1,000.
    assert "budget 5 false alarms per 1,000 tiles = 5 per 100 m of strip (1000 tiles per 100 m" in res.output
    assert "detector alarms per 1,000 clean tiles" in res.output and "(per 100 m: " in res.output
    manifest = json.loads((tmp_path / "registry" / "cal-100m" / "manifest.json").read_text())
    record = manifest["thresholds"]["calibration"]
    assert record["budget_per_100m"] == 5.0 and record["budget_per_1000_tiles"] == pytest.approx(5.0)
    strip = record["strip"]
    assert strip["tiles_per_100m"] == 1000.0 and strip["frame_width_px"] == 200
    assert strip["mm_per_line"] == 0.5 and strip["detector_alarms_per_100m"]["after"] <= 5.0
