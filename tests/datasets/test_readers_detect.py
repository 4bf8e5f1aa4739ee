"""Format detection from paths, on the real data layouts and small files."""

from __future__ import annotations

import pytest

from datasets.problems import AnnotationError
from datasets.readers import FORMATS, detect_format, read_dataset


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("annotations", "voc"),
        ("annotations/crazing_1.xml", "voc"),
        (".", "voc"),  # the NEU-DET root holds annotations/
        ("vott/NEU-DET-steel-export.json", "vott-json"),
        ("vott/NEU-DET-steel-export.csv", "vott-csv"),
    ],
)
def test_neu_layouts(neu_root, relative, expected):
    assert detect_format(neu_root / relative) == expected


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("si-aizu-vott-tutorial", "vott-project"),
        ("si-aizu-vott-tutorial/sample_project.vott", "vott-project"),
        ("si-aizu-vott-tutorial/3dd4e04f52ab21ea4de7a08a76ba4c99-asset.json", "vott-project"),
        ("datumaro-vott_json", "vott-json"),
        ("datumaro-vott_json/train-export.json", "vott-json"),
        ("datumaro-vott_csv/test-export.csv", "vott-csv"),
    ],
)
def test_vott_layouts(vott_examples, relative, expected):
    assert detect_format(vott_examples / relative) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"images": [], "annotations": [], "categories": []}', "coco"),
        ('{"assets": {}}', "vott-json"),
    ],
)
def test_unnamed_json_is_sniffed(tmp_path, content, expected):
    path = tmp_path / "labels.json"
    path.write_text(content)
    assert detect_format(path) == expected


@pytest.mark.parametrize("content", ["[]", "{not json", '{"foo": 1}'])
def test_unrecognised_json(tmp_path, content):
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match="labels.json"):
        detect_format(path)


def test_missing_and_empty(tmp_path):
    with pytest.raises(AnnotationError, match="no such"):
        detect_format(tmp_path / "nope")
    with pytest.raises(AnnotationError, match="no VOC"):
        detect_format(tmp_path)


def test_unknown_format_name(tmp_path):
    assert set(FORMATS) == {"voc", "vott-json", "vott-project", "vott-csv", "coco"}
    with pytest.raises(ValueError, match="unknown annotation format"):
        read_dataset(tmp_path, format="yolo")
