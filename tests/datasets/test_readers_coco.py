"""COCO reader: hand-made files with known answers, and NEU-DET through write_coco and back."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from datasets.model import Box
from datasets.problems import AnnotationError
from datasets.readers import read_dataset
from datasets.readers.coco import read_coco
from datasets.writers import write_coco


def _coco(annotations: list[dict]) -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 50, "height": 40},
            {"id": 2, "file_name": "sub/b.png", "width": 50, "height": 40},
        ],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "scratch"}, {"id": 7, "name": "hole"}],
    }


@pytest.fixture
def coco_dir(tmp_path):
    (tmp_path / "images" / "sub").mkdir(parents=True)
    Image.new("L", (50, 40)).save(tmp_path / "images" / "a.png")
    Image.new("L", (50, 40)).save(tmp_path / "images" / "sub" / "b.png")
    return tmp_path


def test_xywh_becomes_xyxy(coco_dir):
    path = coco_dir / "instances.json"
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1.5, 2, 10, 20.5]},
        {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0, 0, 50, 40]},
    ]
    path.write_text(json.dumps(_coco(anns)))
    aset = read_dataset(path)
    assert aset.format == "coco" and aset.problems == []
    assert aset.class_names == ("scratch", "hole")
    assert aset.by_name()["a.png"].boxes == (Box(1.5, 2, 11.5, 22.5, "hole"),)
    assert aset.by_name()["sub/b.png"].path == coco_dir / "images" / "sub" / "b.png"


def test_problems_name_the_annotation(coco_dir):
    anns = [
        {"id": 1, "image_id": 9, "category_id": 3, "bbox": [1, 1, 2, 2]},
        {"id": 2, "image_id": 1, "category_id": 4, "bbox": [1, 1, 2, 2]},
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [1, 1, "w", 2]},
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2]},
        {"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]},
    ]
    path = coco_dir / "instances.json"
    path.write_text(json.dumps(_coco(anns)))
    aset = read_coco(path)
    assert aset.by_name()["a.png"].boxes == (Box(1, 1, 3, 3, "scratch"),)
    assert [(p.item, p.field) for p in aset.problems] == [
        ("annotations[0]", "image_id"),
        ("image 1 (a.png)", "annotations[1].category_id"),
        ("image 1 (a.png)", "annotations[2].bbox[2]"),
        ("image 1 (a.png)", "annotations[3].bbox"),
    ]
    with pytest.raises(AnnotationError, match=r"annotations\[0\]"):
        read_coco(path, strict=True)


def test_not_coco(coco_dir):
    path = coco_dir / "x.json"
    path.write_text('{"images": {}}')
    with pytest.raises(AnnotationError, match="not COCO"):
        read_coco(path, strict=True)


def test_neu_round_trip_through_coco(neu_root, tmp_path):
    voc = read_dataset(neu_root / "annotations")
    path = write_coco(voc, tmp_path / "neu.json")
    back = read_dataset(path, images_dir=neu_root / "images")
    assert back.format == "coco"
    assert back.class_names == voc.class_names
    assert [p for p in back.problems if p.severity == "error"] == []
    assert [im.name for im in back.images] == [im.name for im in voc.images]
    for a, b in zip(voc.images, back.images, strict=True):
        assert len(a.boxes) == len(b.boxes)
        for u, v in zip(a.boxes, b.boxes, strict=True):
            assert u.label == v.label and max(abs(p - q) for p, q in zip(u.xyxy, v.xyxy, strict=True)) <= 1e-6
