"""``steel data audit`` / ``steel data split``: exit codes, the JSON contract, reports and splits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from datasets.cli import app
from datasets.settings import REPO_ROOT
from tests.datasets.neu_facts import NEU_DEV_PER_CLASS

FORMS = ["annotations", "vott/NEU-DET-steel-export.json", "vott/NEU-DET-steel-export.csv"]

steel = typer.Typer()  # stands in for inspection.cli's top-level app
steel.add_typer(app, name="data")
runner = CliRunner()


def _steel(*args: str):
    return runner.invoke(steel, ["data", *args])


@pytest.mark.parametrize("form", FORMS)
def test_audit_json_on_every_neu_form(neu_root, form):
    result = _steel("audit", str(neu_root / form), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # exactly one JSON object, nothing else on stdout
    assert data["images"] == 1440 and data["boxes"] == 3366
    assert data["per_class"] == NEU_DEV_PER_CLASS
    assert data["errors"] == 0
    assert len(data["duplicate_boxes"]) == 2
    assert data["label_filename_mismatch"]["boxes"] == 159
    assert [(p["a"], p["b"]) for p in data["near_duplicates"]["within"]] == [
        ("patches_101.jpg", "patches_105.jpg")
    ]
    assert "reading" in result.stderr  # progress goes to stderr


def test_audit_via_python_m(neu_root):
    proc = subprocess.run(
        [sys.executable, "-m", "datasets.cli", "audit", str(neu_root / "annotations"), "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["images"], data["boxes"], data["format"]) == (1440, 3366, "voc")


def test_readable_summary_and_report(neu_root, tmp_path):
    result = _steel("audit", str(neu_root / "vott/NEU-DET-steel-export.csv"), "--report", str(tmp_path / "r"))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "1440 images, 3366 boxes, no errors" in out
    assert "rolled-in_scale" in out and "505" in out
    assert "patches_101.jpg ~ patches_105.jpg" in out
    assert (
        "NEU-DET-steel-export.csv [line 59 (crazing_120.jpg)]" in out
    )  # brackets printed, not eaten as markup
    assert (tmp_path / "r" / "report.md").is_file() and (tmp_path / "r" / "box_sizes.png").is_file()


def _malformed_export(neu_root, tmp_path):
    """A 3-asset VoTT export whose second asset has a box width of "wide"."""
    data = json.loads((neu_root / "vott/NEU-DET-steel-export.json").read_text(encoding="utf-8"))
    keys = list(data["assets"])[:3]
    data["assets"] = {k: data["assets"][k] for k in keys}
    data["assets"][keys[1]]["regions"][0]["boundingBox"]["width"] = "wide"
    path = tmp_path / "bad-export.json"
    path.write_text(json.dumps(data, indent=4), encoding="utf-8")
    return path, keys[1], data["assets"][keys[1]]["asset"]["name"]


def test_malformed_export_exits_1_naming_file_asset_field(neu_root, tmp_path):
    path, asset_id, asset_name = _malformed_export(neu_root, tmp_path)
    images = str(neu_root / "images")
    result = _steel("audit", str(path), "--images", images, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    errors = [p for p in data["problems"] if p["severity"] == "error"]
    assert data["errors"] == len(errors) == 1
    assert errors[0]["file"] == str(path)
    assert asset_id in errors[0]["item"] and asset_name in errors[0]["item"]
    assert errors[0]["field"] == "regions[0].boundingBox.width"
    assert data["images"] == 3  # lenient: the bad box is dropped, the rest is audited

    human = _steel("audit", str(path), "--images", images)
    assert human.exit_code == 1
    assert "1 errors" in human.stdout and "regions[0].boundingBox.width" in human.stdout

    strict = _steel("audit", str(path), "--images", images, "--strict")
    assert strict.exit_code == 1
    assert f"{path} [{asset_id} ({asset_name})] regions[0].boundingBox.width" in strict.stderr

    strict_json = _steel("audit", str(path), "--images", images, "--strict", "--json")
    assert strict_json.exit_code == 1
    fatal = json.loads(strict_json.stdout)
    assert fatal["errors"] == 1 and fatal["images"] is None  # nothing was read
    assert fatal["problems"][0]["field"] == "regions[0].boundingBox.width"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "/no/such/annotations"], "does not exist"),
        (["audit", "{root}/annotations", "--format", "yolo"], "'yolo' is not one of"),
        (["audit", "{root}/PROVENANCE.md"], "cannot tell the annotation format"),
        (["audit", "{root}/annotations", "--images", "/no/such/images"], "does not exist"),
        (["split", "{root}/annotations", "--out", "{tmp}/s.json", "--val-fraction", "1"], "not in [0, 1)"),
        (["split", "{root}/annotations"], "--out"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_errors_exit_2(neu_root, tmp_path, args, message):
    result = _steel(*(a.format(root=neu_root, tmp=tmp_path) for a in args))
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.replace("│", " ").split())  # typer boxes and wraps the message
    assert result.stdout == ""


def test_against_reports_shared_images(neu_root, tmp_path):
    for name, stems in (("a", ["crazing_10", "inclusion_10"]), ("b", ["inclusion_10", "scratches_10"])):
        (tmp_path / name / "annotations").mkdir(parents=True)
        (tmp_path / name / "images").mkdir()
        for stem in stems:
            shutil.copyfile(
                neu_root / "annotations" / f"{stem}.xml", tmp_path / name / "annotations" / f"{stem}.xml"
            )
            shutil.copyfile(neu_root / "images" / f"{stem}.jpg", tmp_path / name / "images" / f"{stem}.jpg")
    result = _steel("audit", str(tmp_path / "a" / "annotations"), "--against", str(tmp_path / "b"), "--json")
    assert result.exit_code == 0, result.stderr  # shared images are warnings, not errors
    other = json.loads(result.stdout)["near_duplicates"]["against"]
    assert [(p["a"], p["b"], p["identical"]) for p in other["pairs"]] == [
        ("inclusion_10.jpg", "inclusion_10.jpg", True)
    ]


def test_split_command_is_reproducible(neu_root, tmp_path):
    outs = []
    for form, name in (
        ("annotations", "a.json"),
        ("annotations", "b.json"),
        ("vott/NEU-DET-steel-export.csv", "c.json"),
    ):
        result = _steel("split", str(neu_root / form), "--out", str(tmp_path / name), "--seed", "7")
        assert result.exit_code == 0, result.stderr
        outs.append(json.loads((tmp_path / name).read_text(encoding="utf-8")))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert outs[0]["split_sha256"] == outs[2]["split_sha256"]  # VOC and VoTT CSV: the same split
    assert outs[0]["seed"] == 7 and len(outs[0]["val"]) == 288
    assert outs[0]["split_sha256"][:12] in result.stdout


def test_split_refuses_a_set_with_errors(neu_root, tmp_path):
    path, _, _ = _malformed_export(neu_root, tmp_path)
    result = _steel(
        "split", str(path), "--images", str(neu_root / "images"), "--out", str(tmp_path / "s.json")
    )
    assert result.exit_code == 1
    assert "regions[0].boundingBox.width" in result.stderr
    assert not (tmp_path / "s.json").exists()
