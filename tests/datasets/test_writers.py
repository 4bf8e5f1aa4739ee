"""Writers: VoTT JSON round trip on NEU-DET, COCO read by pycocotools, YOLO lines checked by hand."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from pycocotools.coco import COCO

from datasets.model import AnnotatedSet, Box, ImageRecord
from datasets.readers import read_dataset
from datasets.writers import write_coco, write_vott_json, write_yolo


@pytest.fixture(scope="module")
def neu_json(neu_root):
    return read_dataset(neu_root / "vott" / "NEU-DET-steel-export.json")


def _same_boxes(a: AnnotatedSet, b: AnnotatedSet, tol: float = 1e-6) -> None:
    assert [im.name for im in a.images] == [im.name for im in b.images]
    for x, y in zip(a.images, b.images, strict=True):
        assert len(x.boxes) == len(y.boxes), x.name
        for u, v in zip(x.boxes, y.boxes, strict=True):
            assert u.label == v.label
            assert max(abs(p - q) for p, q in zip(u.xyxy, v.xyxy, strict=True)) <= tol, (x.name, u, v)


def test_vott_json_round_trip_keeps_every_box(neu_json, neu_root, tmp_path):
    path = write_vott_json(neu_json, tmp_path / "again-export.json", project_name="again")
    back = read_dataset(path, images_dir=neu_root / "images")
    assert back.num_boxes == 3366 and back.class_names == neu_json.class_names
    _same_boxes(neu_json, back)
    assert [im.asset_id for im in back.images] == [im.asset_id for im in neu_json.images]
    assert [im.sha256 for im in back.images] == [im.sha256 for im in neu_json.images]
    assert [p for p in back.problems if p.severity == "error"] == []


def test_vott_json_output_shape(neu_json, tmp_path):
    data = json.loads(write_vott_json(neu_json, tmp_path, project_name="my steel").read_text())
    assert (tmp_path / "my-steel-export.json").is_file()  # whitespace -> "-" as VoTT names it
    assert [t["name"] for t in data["tags"]] == list(neu_json.class_names)
    meta = data["assets"]["f7c3e7281627f958771155b860f24fa7"]
    assert meta["asset"]["name"] == "crazing_1.jpg" and meta["asset"]["size"] == {"width": 200, "height": 200}
    assert meta["asset"]["path"].startswith("file:/") and meta["asset"]["state"] == 2
    (region,) = meta["regions"]
    assert region["boundingBox"] == {"height": 193.0, "width": 192.0, "left": 1.0, "top": 1.0}
    assert region["tags"] == ["crazing"] and len(region["points"]) == 4


def test_vott_json_is_deterministic(neu_json, tmp_path):
    one = write_vott_json(neu_json, tmp_path / "a-export.json").read_bytes()
    two = write_vott_json(neu_json, tmp_path / "b-export.json").read_bytes()
    assert one == two


def _small_set(tmp_path) -> AnnotatedSet:
    Image.new("RGB", (40, 20)).save(tmp_path / "a.png")
    boxes = (
        Box(1, 2, 11, 12, "dent"),
        Box(1, 2, 11, 12, "rust"),  # same place, second label: one region with two tags
        Box(1, 2, 11, 12, "dent"),  # an exact duplicate: its own region
        Box(0.25, 0.5, 40, 20, "rust"),
    )
    images = [
        ImageRecord("a.png", 40, 20, boxes, path=tmp_path / "a.png"),
        ImageRecord("clean.png", 40, 20, ()),
    ]
    return AnnotatedSet(images=images, class_names=("dent", "rust"), source="test")


def test_vott_json_multi_tag_regions_and_copy_images(tmp_path):
    aset = _small_set(tmp_path)
    out = tmp_path / "export"
    path = write_vott_json(aset, out / "t-export.json", copy_images=True)
    assert (out / "a.png").read_bytes() == (tmp_path / "a.png").read_bytes()
    regions = next(iter(json.loads(path.read_text())["assets"].values()))["regions"]
    assert [r["tags"] for r in regions] == [["dent", "rust"], ["dent"], ["rust"]]
    back = read_dataset(path)
    assert back.by_name()["a.png"].path == out / "a.png"
    assert sorted(back.by_name()["a.png"].boxes, key=repr) == sorted(aset.images[0].boxes, key=repr)
    assert back.by_name()["clean.png"].boxes == ()


def test_coco_loads_in_pycocotools(tmp_path):
    aset = _small_set(tmp_path)
    coco = COCO(str(write_coco(aset, tmp_path / "c.json")))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["dent", "rust"]
    assert len(coco.getImgIds()) == 2
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["bbox"] for a in anns][-1] == [0.25, 0.5, 39.75, 19.5]
    assert [a["category_id"] for a in anns] == [1, 2, 1, 2]
    assert coco.getAnnIds(imgIds=[2]) == []


def test_yolo_lines(tmp_path):
    aset = _small_set(tmp_path)
    out = write_yolo(aset, tmp_path / "yolo")
    assert (out / "classes.txt").read_text() == "dent\nrust\n"
    lines = (out / "a.txt").read_text().splitlines()
    assert lines[0] == "0 0.150000 0.350000 0.250000 0.500000"
    assert lines[3] == "1 0.503125 0.512500 0.993750 0.975000"
    assert (out / "clean.txt").read_text() == ""  # negative sample


def test_yolo_on_neu_matches_boxes(neu_json, tmp_path):
    out = write_yolo(neu_json, tmp_path / "yolo")
    assert len(list(out.glob("*.txt"))) == 1440 + 1
    total = 0
    for im in neu_json.images:
        rows = [line.split() for line in (out / f"{im.stem}.txt").read_text().splitlines()]
        total += len(rows)
        for row, box in zip(rows, im.boxes, strict=True):
            cls, cx, cy, w, h = int(row[0]), *map(float, row[1:])
            assert neu_json.class_names[cls] == box.label
            assert abs(cx * 200 - (box.x1 + box.x2) / 2) < 1e-3 and abs(w * 200 - box.width) < 1e-3
            assert abs(cy * 200 - (box.y1 + box.y2) / 2) < 1e-3 and abs(h * 200 - box.height) < 1e-3
    assert total == 3366


@pytest.mark.parametrize("writer", ["coco", "yolo", "vott"])
def test_writers_refuse_labels_outside_class_names(tmp_path, writer):
    aset = AnnotatedSet(
        images=[ImageRecord("a.png", 10, 10, (Box(0, 0, 1, 1, "cat"),))], class_names=("dog",)
    )
    call = {
        "coco": lambda: write_coco(aset, tmp_path / "c.json"),
        "yolo": lambda: write_yolo(aset, tmp_path / "y"),
        "vott": lambda: write_vott_json(aset, tmp_path / "v-export.json"),
    }[writer]
    with pytest.raises(ValueError, match="'cat' is not in class_names"):
        call()


def test_yolo_needs_sizes_and_unique_stems(tmp_path):
    unknown = AnnotatedSet(images=[ImageRecord("a.png", 0, 0, ())], class_names=("dog",))
    with pytest.raises(ValueError, match="size unknown"):
        write_yolo(unknown, tmp_path / "y")
    clash = AnnotatedSet(
        images=[ImageRecord("a.png", 5, 5), ImageRecord("a.jpg", 5, 5)], class_names=("dog",)
    )
    with pytest.raises(ValueError, match="overwrite"):
        write_yolo(clash, tmp_path / "y")
