"""Hostile edits of real annotation files: repeated asset ids, typo labels, JSON booleans as ids.

Each case starts from a real file (NEU-DET's VoTT export, the SI-Aizu VoTT project, NEU-DET written as
COCO) and writes an edited copy to ``tmp_path``; nothing may vanish or change class without an error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from datasets.cli import app
from datasets.model import NEU_DET_CLASSES
from datasets.readers import read_dataset
from datasets.writers import write_coco

EXPORT = "vott/NEU-DET-steel-export.json"
NEU_CLASSES_ARG = ",".join(NEU_DET_CLASSES)

steel = typer.Typer()  # stands in for the top-level `steel` app
steel.add_typer(app, name="data")
runner = CliRunner()


def _object_text(pairs: list[tuple[str, object]]) -> str:
    """A JSON object written from pairs, so a key may appear twice (``json.dumps`` cannot do that)."""
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


def _export_with_repeated_asset(neu_root: Path, tmp_path: Path) -> tuple[Path, str]:
    """NEU-DET's export where crazing_10.jpg's entry is filed under crazing_1.jpg's asset id (a bad merge)."""
    data = json.loads((neu_root / EXPORT).read_text())
    items = list(data["assets"].items())
    first_id = items[0][0]
    assert (
        items[0][1]["asset"]["name"] == "crazing_1.jpg" and items[1][1]["asset"]["name"] == "crazing_10.jpg"
    )
    items[1] = (first_id, items[1][1])
    top = [(k, v) for k, v in data.items() if k != "assets"]
    path = tmp_path / "vott" / "merged-export.json"
    path.parent.mkdir()
    path.write_text(_object_text(top)[:-1] + ', "assets": ' + _object_text(items) + "}")
    return path, first_id


def test_an_asset_id_repeated_in_a_vott_export_is_an_error_naming_file_and_asset(neu_root, tmp_path):
    path, asset_id = _export_with_repeated_asset(neu_root, tmp_path)
    aset = read_dataset(path, images_dir=neu_root / "images")
    errors = [p for p in aset.problems if p.severity == "error"]
    assert len(errors) == 1
    (error,) = errors
    assert error.file == str(path)
    assert error.item == f"{asset_id} (crazing_10.jpg)" and error.field == f"assets[{asset_id!r}]"
    assert "appears more than once" in error.message and "crazing_1.jpg" in error.message
    assert [im.name for im in aset.images[:2]] == ["crazing_1.jpg", "crazing_100.jpg"]  # the first entry kept


def test_the_audit_of_an_export_with_a_repeated_asset_id_exits_1(neu_root, tmp_path):
    path, asset_id = _export_with_repeated_asset(neu_root, tmp_path)
    result = runner.invoke(
        steel, ["data", "audit", str(path), "--images", str(neu_root / "images"), "--json"]
    )
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["errors"] == 1 and asset_id in data["problems"][0]["item"]


def test_an_asset_id_repeated_in_a_vott_project_file_is_an_error(vott_examples, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(vott_examples / "si-aizu-vott-tutorial", project)
    vott = project / "sample_project.vott"
    data = json.loads(vott.read_text())
    items = list(data["assets"].items())
    items.append((items[0][0], {**items[2][1]}))  # car_3.jpg's entry again, under car_1.jpg's id
    top = [(k, v) for k, v in data.items() if k != "assets"]
    vott.write_text(_object_text(top)[:-1] + ', "assets": ' + _object_text(items) + "}")
    aset = read_dataset(project)
    repeated = [p for p in aset.problems if "appears more than once" in p.message]
    assert [(p.severity, p.file, p.item) for p in repeated] == [
        ("error", str(vott), f"{items[0][0]} (car_3.jpg)")
    ]


def _export_with_typo_tag(neu_root: Path, tmp_path: Path) -> tuple[Path, str]:
    """NEU-DET's export with one region tagged ``crazng``; VoTT adds a typed tag to the project's tags."""
    data = json.loads((neu_root / EXPORT).read_text())
    asset_id, entry = next(iter(data["assets"].items()))
    entry["regions"][0]["tags"] = ["crazng"]
    data["tags"].append({"name": "crazng", "color": "#000000"})
    path = tmp_path / "vott" / "typo-export.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    return path, asset_id


def test_a_typo_label_is_an_error_naming_file_asset_and_label_when_classes_are_given(neu_root, tmp_path):
    path, asset_id = _export_with_typo_tag(neu_root, tmp_path)
    args = ["data", "audit", str(path), "--images", str(neu_root / "images"), "--json"]
    result = runner.invoke(steel, [*args, "--classes", NEU_CLASSES_ARG])
    assert result.exit_code == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["class_names"] == list(NEU_DET_CLASSES)
    (error,) = [p for p in data["problems"] if p["severity"] == "error"]
    assert error["file"] == str(path)
    assert error["item"] == f"{asset_id} (crazing_1.jpg)" and error["field"] == "regions[0].tags[0]"
    assert "'crazng'" in error["message"]


def test_a_typo_label_without_a_class_list_is_a_look_alike_warning(neu_root, tmp_path):
    path, _ = _export_with_typo_tag(neu_root, tmp_path)
    aset = read_dataset(path, images_dir=neu_root / "images")
    assert "crazng" in aset.class_names  # the file decides, but not silently:
    (warning,) = [p for p in aset.problems if p.field == "class names"]
    assert warning.severity == "warning" and "'crazing' and 'crazng'" in warning.message


def test_a_typo_label_in_the_csv_export_is_an_error_with_classes(neu_root, tmp_path):
    lines = (neu_root / "vott" / "NEU-DET-steel-export.csv").read_text().splitlines()
    assert lines[1].endswith('"crazing"')
    lines[1] = lines[1][: -len('"crazing"')] + '"crazng"'
    path = tmp_path / "vott" / "typo-export.csv"
    path.parent.mkdir()
    path.write_text("\n".join(lines))
    aset = read_dataset(path, images_dir=neu_root / "images", class_names=NEU_DET_CLASSES)
    (error,) = [p for p in aset.problems if p.severity == "error"]
    assert (error.file, error.item, error.field) == (str(path), "line 2 (crazing_1.jpg)", "label")
    assert "'crazng'" in error.message


@pytest.mark.parametrize("value", ["", "crazing,,inclusion", "crazing,crazing"])
def test_a_bad_classes_option_is_a_usage_error(neu_root, value):
    result = runner.invoke(steel, ["data", "audit", str(neu_root / EXPORT), "--classes", value])
    assert result.exit_code == 2
    assert "--classes" in result.stderr


def _neu_coco(neu_root: Path, tmp_path: Path) -> tuple[Path, dict]:
    path = write_coco(read_dataset(neu_root / "annotations"), tmp_path / "neu.json")
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("field", ["image_id", "category_id"])
def test_a_json_boolean_is_not_a_coco_id(neu_root, tmp_path, field):
    path, data = _neu_coco(neu_root, tmp_path)
    ids = {im["id"] for im in data["images"]} | {c["id"] for c in data["categories"]}
    assert 1 in ids  # `true == 1` in Python: the boolean would find id 1
    boxes = len(data["annotations"])
    data["annotations"][5][field] = True
    path.write_text(json.dumps(data))
    aset = read_dataset(path, images_dir=neu_root / "images")
    assert aset.num_boxes == boxes - 1
    (error,) = [p for p in aset.problems if p.severity == "error"]
    assert error.field.endswith(field) and "True" in error.message


def test_a_key_repeated_inside_a_coco_annotation_is_an_error_naming_its_path(neu_root, tmp_path):
    path, data = _neu_coco(neu_root, tmp_path)
    text = json.dumps(data)
    first = json.dumps(data["annotations"][0])
    assert text.count(first) == 1
    repeated = first[:-1] + ', "category_id": 5}'  # a hand edit: the second value would win in json
    path.write_text(text.replace(first, repeated))
    aset = read_dataset(path, images_dir=neu_root / "images")
    (error,) = [p for p in aset.problems if p.severity == "error"]
    assert (error.file, error.field) == (str(path), "annotations[0].category_id")
    assert "appears more than once" in error.message
    assert aset.num_boxes == len(data["annotations"])  # the first value is used, the box kept


def test_a_key_repeated_inside_a_vott_region_is_an_error(neu_root, tmp_path):
    path, _ = _export_with_typo_tag(neu_root, tmp_path)
    text = path.read_text().replace('"tags": ["crazng"]', '"tags": ["crazing"], "tags": ["crazng"]', 1)
    path.write_text(text)
    aset = read_dataset(path, images_dir=neu_root / "images")
    (error,) = [p for p in aset.problems if p.severity == "error"]
    assert error.field.endswith(".regions[0].tags") and error.field.startswith("assets.")


def test_an_export_with_thousands_of_labels_gets_one_warning_instead_of_a_pairwise_search(neu_root, tmp_path):
    """Each region of NEU-DET's export gets its own label: 3,366 names, whose pairwise look-alike search
    took minutes before it was capped."""
    data = json.loads((neu_root / EXPORT).read_text())
    count = 0
    for asset in data["assets"].values():
        for region in asset["regions"]:
            region["tags"] = [f"defect-kind-{count:05d}"]
            count += 1
    assert count > 3000
    data["tags"] = [{"name": f"defect-kind-{i:05d}", "color": "#ff0000"} for i in range(count)]
    path = tmp_path / "vott" / "many-labels.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    aset = read_dataset(path, images_dir=neu_root / "images")
    assert len(aset.class_names) == count
    (warning,) = [p for p in aset.problems if p.field == "class names"]
    assert warning.severity == "warning" and "not checked" in warning.message
