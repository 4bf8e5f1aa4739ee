"""``steel calibrate-thresholds`` writes a per-class operating point into a real bundle's manifest, and
``steel predict`` / ``steel eval`` apply it by default (an explicit ``--conf`` wins)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from datasets.model import NEU_DET_CLASSES
from inspection.cli import app
from training.bundle import MANIFEST, load_bundle, sha256_file
from training.calibrate_cli import write_operating_point
from training.operating_point import CalibrationConfig, OperatingPoint

from .tiny_bundle import tiny_yolo_bundle

runner = CliRunner()
IMAGE = "crazing_1.jpg"


def steel(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return tiny_yolo_bundle(tmp_path / "bundle")


@pytest.fixture
def voc(neu_root: Path, tmp_path: Path) -> Path:
    """Six real VOC files, one per class."""
    folder = tmp_path / "annotations"
    folder.mkdir()
    for cls in NEU_DET_CLASSES:
        xml = sorted((neu_root / "annotations").glob(f"{cls}_*.xml"))[0]
        shutil.copy(xml, folder / xml.name)
    return folder


def calibrate_args(bundle: Path, voc: Path, neu_root: Path, *extra: str) -> list[str | Path]:
    return ["calibrate-thresholds", "--model", bundle, "--data", voc, "--images", neu_root / "images",
            "--device", "cpu", *extra]  # fmt: skip


def test_calibration_writes_thresholds_per_class_and_a_new_version(bundle: Path, voc: Path, neu_root: Path):
    weights_sha = sha256_file(bundle / "weights.safetensors")
    result = steel(*calibrate_args(bundle, voc, neu_root, "--method", "recall", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["version"] == report["version"] and report["version"].startswith("tiny-seed0-op")
    thresholds = manifest["thresholds"]
    assert list(thresholds["per_class"]) == list(NEU_DET_CLASSES) == list(report["per_class"])
    assert all(0.05 <= t < 1 for t in thresholds["per_class"].values())
    calibration = thresholds["calibration"]
    assert calibration["method"] == "recall" and calibration["images"] == 6
    assert calibration["base_version"] == "tiny-seed0" and str(voc) in calibration["data"]
    assert report["after"]["operating_point"] == thresholds["per_class"]
    assert sha256_file(bundle / "weights.safetensors") == weights_sha  # only the manifest changed
    assert load_bundle(bundle).per_class_thresholds == thresholds["per_class"]
    # Calibrating again to the same point keeps the version: the base version is remembered.
    again = steel(*calibrate_args(bundle, voc, neu_root, "--method", "recall", "--json"))
    assert json.loads(again.stdout)["version"] == report["version"]


def test_dry_run_leaves_the_manifest_byte_identical(bundle: Path, voc: Path, neu_root: Path):
    before = (bundle / MANIFEST).read_bytes()
    result = steel(*calibrate_args(bundle, voc, neu_root, "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "not written (--dry-run)" in result.stdout and "reject recall" in result.stdout
    assert (bundle / MANIFEST).read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "best"], "--method"),
        (["--target-recall", "1.5"], "--target-recall"),
        (["--method", "line", "--target-reject-recall", "1.5"], "--target-reject-recall"),
        (["--method", "line", "--target-class-reject-recall", "0"], "--target-class-reject-recall"),
    ],
)
def test_bad_calibration_options_exit_2_naming_the_option(bundle, voc, neu_root, args, message):
    result = steel(*calibrate_args(bundle, voc, neu_root, *args))
    assert result.exit_code == 2 and message in result.stderr


def only_crazing(bundle: Path) -> None:
    """An operating point that lets crazing through from 0 and nothing else (1.0 is above every score)."""
    per_class = {name: (0.0 if name == "crazing" else 1.0) for name in NEU_DET_CLASSES}
    point = OperatingPoint(per_class=per_class, achieved={}, config=CalibrationConfig(), images=0)
    write_operating_point(bundle, point, data="hand-made")


def test_predict_applies_the_bundles_operating_point_unless_conf_is_given(bundle: Path, neu_root: Path):
    image = neu_root / "images" / IMAGE
    only_crazing(bundle)
    default = json.loads(steel("predict", "--model", bundle, image, "--device", "cpu", "--json").stdout)
    classes = {d["class"] for d in default["images"][0]["detections"]}
    assert classes == {"crazing"}
    explicit = steel("predict", "--model", bundle, image, "--device", "cpu", "--conf", "0.001", "--json")
    assert len({d["class"] for d in json.loads(explicit.stdout)["images"][0]["detections"]}) > 1


def test_eval_reports_at_the_bundles_operating_point_unless_conf_is_given(bundle, voc, neu_root):
    only_crazing(bundle)
    args = ["eval", "--model", bundle, "--data", voc, "--images", neu_root / "images", "--device", "cpu"]
    default = json.loads(steel(*args, "--json").stdout)
    assert default["operating_point"]["crazing"] == 0.0 and default["operating_point"]["scratches"] == 1.0
    explicit = json.loads(steel(*args, "--conf", "0.3", "--json").stdout)
    assert set(explicit["operating_point"].values()) == {0.3}
