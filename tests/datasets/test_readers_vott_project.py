"""VoTT project folder reader on the real SI-Aizu project (VoTT 2.1.0 output) and edited copies."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from datasets.problems import AnnotationError
from datasets.readers import detect_format, read_dataset
from datasets.readers.vott_project import read_vott_project

SIZES = {"car_1.jpg": (1484, 965), "car_2.jpg": (708, 472), "car_3.jpg": (1200, 800)}


@pytest.fixture
def project(vott_examples):
    return vott_examples / "si-aizu-vott-tutorial"


def test_real_project_without_images(project):
    assert detect_format(project) == "vott-project"
    aset = read_dataset(project)
    assert aset.format == "vott-project"
    assert aset.class_names == ("car",)
    assert [(im.name, len(im.boxes)) for im in aset.images] == [
        ("car_1.jpg", 8),
        ("car_2.jpg", 3),
        ("car_3.jpg", 6),
    ]
    assert aset.num_boxes == 17
    assert all(im.path is None and (im.width, im.height) == SIZES[im.name] for im in aset.images)
    # The images were never published: one error each, naming the -asset.json file and the asset.
    assert [(p.severity, p.field) for p in aset.problems] == [("error", "asset.name")] * 3
    first = aset.problems[0]
    assert first.file.endswith("3cf00e96bdd8f2b89553fe2f9a93b283-asset.json")
    assert first.item == "3cf00e96bdd8f2b89553fe2f9a93b283 (car_1.jpg)"
    assert "image not found" in first.message


def test_real_project_strict_raises_on_missing_image(project):
    with pytest.raises(AnnotationError, match="image not found: 'car_1.jpg'"):
        read_vott_project(project / "sample_project.vott", strict=True)


def test_first_box_is_unrounded(project):
    car_2 = read_dataset(project).by_name()["car_2.jpg"]
    box = car_2.boxes[0]
    assert box.x1 == 146.2670349196539 and box.y1 == 243.18002087198516
    assert box.x2 == pytest.approx(146.2670349196539 + 145.6516919035847, abs=1e-9)


@pytest.fixture
def project_copy(project, tmp_path):
    for p in project.iterdir():
        shutil.copyfile(p, tmp_path / p.name)
    (tmp_path / "images").mkdir()
    for name, size in SIZES.items():
        Image.new("RGB", size).save(tmp_path / "images" / name)
    return tmp_path


def test_project_with_images(project_copy):
    aset = read_vott_project(project_copy, strict=True)
    assert aset.num_boxes == 17 and aset.problems == []
    assert all(im.path == project_copy / "images" / im.name and len(im.sha256) == 64 for im in aset.images)


def test_project_asset_states(project_copy):
    vott = json.loads((project_copy / "sample_project.vott").read_text())
    vott["assets"]["visited"] = {"id": "visited", "name": "car_2.jpg", "state": 1, "type": 1}
    vott["assets"]["never"] = {"id": "never", "name": "car_3.jpg", "state": 0, "type": 1}
    vott["assets"]["lost"] = {"id": "lost", "name": "car_1.jpg", "state": 2, "type": 1}
    (project_copy / "sample_project.vott").write_text(json.dumps(vott))
    (project_copy / "8d3388b6ed24eb6981a237ff1f95f0ff-asset.json").unlink()  # car_3 was tagged: now lost
    aset = read_vott_project(project_copy)
    assert [(im.name, len(im.boxes)) for im in aset.images] == [("car_1.jpg", 8), ("car_2.jpg", 3)]
    got = [(p.severity, p.item.split()[0], p.field) for p in aset.problems]
    assert ("error", "8d3388b6ed24eb6981a237ff1f95f0ff", "state") in got  # tagged, file missing
    assert ("warning", "never", "state") in got
    assert ("error", "lost", "state") in got
    # "visited" names car_2.jpg again: a second record for one image is refused, not merged.
    assert ("error", "visited", "asset.name") in got


def test_asset_files_without_project_file(project_copy):
    (project_copy / "sample_project.vott").unlink()
    aset = read_vott_project(project_copy)
    assert aset.num_boxes == 17 and aset.class_names == ("car",)
    assert [(p.severity, p.message[:9]) for p in aset.problems] == [("warning", "no .vott ")]


def test_malformed_asset_file(project_copy):
    path = project_copy / "3dd4e04f52ab21ea4de7a08a76ba4c99-asset.json"
    path.write_text(path.read_text()[:500])
    aset = read_vott_project(project_copy)
    assert aset.num_boxes == 14
    (err,) = aset.problems
    assert err.file == str(path) and "malformed JSON" in err.message
