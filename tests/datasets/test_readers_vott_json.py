"""VoTT JSON export reader on NEU-DET's export, datumaro's hand-made export and generated broken files."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from datasets.model import NEU_DET_CLASSES, Box
from datasets.problems import AnnotationError
from datasets.readers import read_dataset
from datasets.readers.vott_json import read_vott_json

EXPORT = "vott/NEU-DET-steel-export.json"


@pytest.fixture(scope="module")
def neu_json(neu_root):
    return read_dataset(neu_root / EXPORT)


def test_neu_export_counts_and_tags(neu_json):
    assert neu_json.format == "vott-json"
    assert len(neu_json.images) == 1440
    assert neu_json.num_boxes == 3366
    assert neu_json.class_names == NEU_DET_CLASSES  # from the export's tags list, in its order
    assert neu_json.per_class()["inclusion"] == 811


def test_neu_images_resolved_from_sibling_images_folder(neu_json, neu_root):
    assert [p for p in neu_json.problems if p.severity == "error"] == []
    first = neu_json.images[0]
    assert first.name == "crazing_1.jpg"
    assert first.asset_id == "f7c3e7281627f958771155b860f24fa7"
    assert first.path == neu_root / "images" / "crazing_1.jpg"
    assert first.boxes == (Box(1.0, 1.0, 193.0, 194.0, "crazing"),)  # left/top + width/height, unchanged
    assert all(im.path is not None and len(im.sha256) == 64 for im in neu_json.images)


def test_asset_path_is_not_used_and_images_dir_is(neu_root, tmp_path):
    export = tmp_path / "x-export.json"
    shutil.copyfile(neu_root / EXPORT, export)
    lost = read_vott_json(export)
    assert len(lost.images) == 1440 and lost.num_boxes == 3366  # kept, path=None, reported
    assert all(im.path is None for im in lost.images)
    missing = [p for p in lost.problems if "image not found" in p.message]
    assert len(missing) == 1440 and missing[0].field == "asset.name"
    found = read_vott_json(export, images_dir=neu_root / "images")
    assert all(im.path is not None for im in found.images)
    assert [p for p in found.problems if p.severity == "error"] == []


def test_datumaro_fixture_documented_problems(vott_examples):
    aset = read_dataset(vott_examples / "datumaro-vott_json" / "train-export.json")
    assert aset.class_names == ("animal", "dog", "person")
    assert [im.name for im in aset.images] == ["img0001.jpg", "img0002.jpg", "img0003.jpg"]
    # Images are not shipped: every box is checked against the annotated 5x5 size, and lies outside it.
    assert aset.num_boxes == 0
    assert all(im.path is None and (im.width, im.height) == (5, 5) for im in aset.images)
    got = sorted((p.severity, p.item.split()[0], p.field, _kind(p.message)) for p in aset.problems)
    assert got == sorted(
        [
            ("error", "0d3de147f", "asset.name", "image not found"),
            ("error", "b482849bc", "asset.name", "image not found"),
            ("error", "50fef05a8", "asset.name", "image not found"),
            ("error", "0d3de147f", "regions[0].boundingBox", "outside"),
            ("error", "b482849bc", "regions[0].boundingBox", "outside"),  # tag "animal"
            ("error", "b482849bc", "regions[0].boundingBox", "outside"),  # tag "dog"
            ("error", "50fef05a8", "regions[0].tags", "no tags"),
            ("error", "50fef05a8", "regions[1].boundingBox", "outside"),
        ]
    )
    no_tags = next(p for p in aset.problems if p.field == "regions[0].tags")
    assert "35t9mf-Zr" in no_tags.message
    assert {
        p.message.split()[0]
        for p in aset.problems
        if p.item.startswith("b482849bc") and "outside" in p.message
    } == {
        "animal",
        "dog",
    }


def _kind(message: str) -> str:
    for kind in ("image not found", "outside", "no tags"):
        if kind in message:
            return kind
    return message


def test_datumaro_fixture_with_real_images(vott_examples, tmp_path):
    """With 64x64 images present the file size wins (warned) and the two-tag region gives two boxes."""
    shutil.copyfile(
        vott_examples / "datumaro-vott_json" / "train-export.json", tmp_path / "train-export.json"
    )
    for n in (1, 2, 3):
        Image.new("RGB", (64, 64)).save(tmp_path / f"img000{n}.jpg")
    aset = read_vott_json(tmp_path / "train-export.json")
    boxes = {im.name: im.boxes for im in aset.images}
    assert boxes["img0001.jpg"] == (Box(5, 10, 15, 12, "animal"),)
    assert boxes["img0002.jpg"] == (
        Box(11.5, 12, 11.5 + 10.2, 32.5, "animal"),
        Box(11.5, 12, 11.5 + 10.2, 32.5, "dog"),
    )
    assert boxes["img0003.jpg"] == (Box(13.7, 20.2, 13.7 + 31.9, 20.2 + 43.4, "person"),)
    size_warnings = [p for p in aset.problems if p.field == "asset.size"]
    assert len(size_warnings) == 3 and all(p.severity == "warning" for p in size_warnings)
    assert [p.field for p in aset.problems if p.severity == "error"] == ["regions[0].tags"]
    with pytest.raises(
        AnnotationError, match=r"train-export\.json \[50fef05a8 \(img0003\.jpg\)\] regions\[0\]\.tags"
    ):
        read_vott_json(tmp_path / "train-export.json", strict=True)


# ----- generated exports -------------------------------------------------------------------------


def _region(rid: str, tags: list, left=1, top=2, width=3, height=4, kind="RECTANGLE") -> dict:
    return {
        "id": rid,
        "type": kind,
        "tags": tags,
        "boundingBox": {"height": height, "width": width, "left": left, "top": top},
        "points": [{"x": left, "y": top}, {"x": left + 1, "y": top + 2}, {"x": left + 3, "y": top + 1}],
    }


def _export(regions_by_name: dict[str, list]) -> dict:
    assets = {}
    for k, (name, regions) in enumerate(regions_by_name.items()):
        aid = f"id{k}"
        asset = {
            "format": "png",
            "id": aid,
            "name": name,
            "path": f"file:/x/{name}",
            "size": {"width": 32, "height": 16},
        }
        assets[aid] = {"asset": {**asset, "state": 2, "type": 1}, "regions": regions, "version": "2.2.0"}
    tags = [{"name": "cat", "color": "#000000"}, {"name": "dog", "color": "#ffffff"}]
    return {"name": "t", "tags": tags, "version": "2.2.0", "assets": assets}


@pytest.fixture
def export_dir(tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("L", (32, 16)).save(tmp_path / name)
    return tmp_path


def _write(folder: Path, data: dict | str) -> Path:
    path = folder / "t-export.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_generated_export_reads_clean(export_dir):
    aset = read_vott_json(_write(export_dir, _export({"a.png": [_region("r1", ["cat"])], "b.png": []})))
    assert aset.problems == []
    assert aset.by_name()["a.png"].boxes == (Box(1, 2, 4, 6, "cat"),)
    assert aset.by_name()["b.png"].boxes == ()  # a defect-free image is legal


def test_truncated_json(export_dir):
    text = json.dumps(_export({"a.png": [_region("r1", ["cat"])]}))
    path = _write(export_dir, text[: len(text) // 2])
    with pytest.raises(AnnotationError, match=r"t-export\.json: malformed JSON") as info:
        read_vott_json(path, strict=True)
    assert info.value.problem.file == str(path)
    lenient = read_vott_json(path)
    assert lenient.images == [] and lenient.problems[0].severity == "error"


def test_non_numeric_width_names_file_asset_and_field(export_dir):
    data = _export({"a.png": [_region("r1", ["cat"]), _region("r2", ["dog"], width="abc")], "b.png": []})
    path = _write(export_dir, data)
    with pytest.raises(AnnotationError) as info:
        read_vott_json(path, strict=True)
    problem = info.value.problem
    assert (problem.file, problem.item, problem.field) == (
        str(path),
        "id0 (a.png)",
        "regions[1].boundingBox.width",
    )
    assert "not a number: 'abc'" in str(info.value)
    lenient = read_vott_json(path)
    assert lenient.by_name()["a.png"].boxes == (Box(1, 2, 4, 6, "cat"),)  # the other region survives


def test_asset_missing_name(export_dir):
    data = _export({"a.png": [_region("r1", ["cat"])], "b.png": [_region("r2", ["dog"])]})
    del data["assets"]["id1"]["asset"]["name"]
    path = _write(export_dir, data)
    with pytest.raises(AnnotationError) as info:
        read_vott_json(path, strict=True)
    assert (info.value.problem.item, info.value.problem.field) == ("id1", "asset.name")
    lenient = read_vott_json(path)
    assert [im.name for im in lenient.images] == ["a.png"]
    assert [(p.item, p.field) for p in lenient.problems] == [("id1", "asset.name")]


def test_polygon_becomes_its_points_bounding_box(export_dir):
    aset = read_vott_json(_write(export_dir, _export({"a.png": [_region("p", ["dog"], kind="POLYGON")]})))
    assert aset.images[0].boxes == (Box(1, 2, 4, 4, "dog"),)
    (warn,) = aset.problems
    assert warn.severity == "warning" and warn.field == "regions[0].type" and "POLYGON" in warn.message


def test_point_region_and_unknown_tag_are_errors(export_dir):
    regions = [_region("pt", ["cat"], kind="POINT"), _region("u", ["cow", "dog"]), _region("ok", ["cat"])]
    aset = read_vott_json(_write(export_dir, _export({"a.png": regions})))
    assert aset.images[0].boxes == (Box(1, 2, 4, 6, "dog"), Box(1, 2, 4, 6, "cat"))
    assert [(p.severity, p.field) for p in aset.problems] == [
        ("error", "regions[0].type"),
        ("error", "regions[1].tags[0]"),
    ]
    assert "unknown tag 'cow'" in aset.problems[1].message


def test_class_names_option_overrides_tags(export_dir):
    path = _write(export_dir, _export({"a.png": [_region("r", ["cat"]), _region("s", ["dog"])]}))
    aset = read_dataset(path, class_names=["dog"])
    assert aset.class_names == ("dog",)
    assert aset.images[0].boxes == (Box(1, 2, 4, 6, "dog"),)
    assert [p.field for p in aset.problems] == ["regions[0].tags[0]"]


def test_video_parent_is_skipped_and_frames_kept(export_dir):
    data = _export({"a.png": [_region("r", ["cat"])], "b.png": []})
    data["assets"]["id1"]["asset"]["type"] = 2
    aset = read_vott_json(_write(export_dir, data))
    assert [im.name for im in aset.images] == ["a.png"]
    assert [(p.severity, p.field) for p in aset.problems] == [("warning", "asset.type")]


def test_negative_width_is_dropped(export_dir):
    aset = read_vott_json(_write(export_dir, _export({"a.png": [_region("r", ["cat"], width=-3)]})))
    assert aset.images[0].boxes == ()
    assert aset.problems[0].severity == "error" and "negative area" in aset.problems[0].message


def test_top_level_not_an_object(export_dir):
    with pytest.raises(AnnotationError, match="top level is a JSON list"):
        read_vott_json(_write(export_dir, "[1, 2]"), strict=True)
    broken = copy.deepcopy(_export({}))
    broken["assets"] = []
    with pytest.raises(AnnotationError, match="assets"):
        read_vott_json(_write(export_dir, broken), strict=True)


def test_folder_with_one_export_is_accepted(export_dir):
    _write(export_dir, _export({"a.png": [_region("r", ["cat"])]}))
    assert read_dataset(export_dir).format == "vott-json"
    assert read_vott_json(export_dir).num_boxes == 1
