"""VoTT CSV reader, and the check that NEU-DET's three annotation forms agree box for box."""

from __future__ import annotations

import pytest
from PIL import Image

from datasets.model import Box
from datasets.problems import AnnotationError
from datasets.readers import read_dataset
from datasets.readers.vott_csv import read_vott_csv

HEADER = '"image","xmin","ymin","xmax","ymax","label"'


@pytest.fixture(scope="module")
def neu_forms(neu_root):
    return {
        "voc": read_dataset(neu_root / "annotations"),
        "vott-json": read_dataset(neu_root / "vott" / "NEU-DET-steel-export.json"),
        "vott-csv": read_dataset(neu_root / "vott" / "NEU-DET-steel-export.csv"),
    }


def test_neu_csv_counts(neu_forms, neu_root):
    csv = neu_forms["vott-csv"]
    assert csv.format == "vott-csv"
    assert (len(csv.images), csv.num_boxes) == (1440, 3366)
    assert (
        not (neu_root / "vott" / "NEU-DET-steel-export.csv").read_bytes().endswith(b"\n")
    )  # VoTT: no final EOL
    assert all(
        im.path == neu_root / "images" / im.name and (im.width, im.height) == (200, 200) for im in csv.images
    )


def test_three_neu_forms_give_identical_boxes(neu_forms):
    """VOC (1-based ints, converted), VoTT JSON and VoTT CSV (0-based floats) describe the same boxes."""
    voc = {im.name: im for im in neu_forms["voc"].images}
    for form in ("vott-json", "vott-csv"):
        other = {im.name: im for im in neu_forms[form].images}
        assert other.keys() == voc.keys(), form
        for name, im in voc.items():
            theirs = other[name]
            assert len(theirs.boxes) == len(im.boxes), (form, name)
            for a, b in zip(im.boxes, theirs.boxes, strict=True):
                assert a.label == b.label, (form, name)
                assert max(abs(u - v) for u, v in zip(a.xyxy, b.xyxy, strict=True)) <= 1e-6, (
                    form,
                    name,
                    a,
                    b,
                )
            assert theirs.sha256 == im.sha256
    for aset in neu_forms.values():
        assert [p for p in aset.problems if p.severity == "error"] == []
        assert aset.per_class() == neu_forms["voc"].per_class()


def test_datumaro_csvs_with_trailing_newline(vott_examples):
    train = read_dataset(vott_examples / "datumaro-vott_csv" / "train-export.csv")
    assert train.class_names == ("helmet", "person")
    assert [(im.name, im.boxes) for im in train.images] == [
        ("img0003.jpg", (Box(6.7, 10.3, 10, 15, "helmet"), Box(13.7, 20.2, 45.6, 63.6, "person"))),
        ("img0004.jpg", (Box(1, 2, 2, 4, "helmet"),)),
    ]
    # The images are not shipped and the CSV has no sizes: records kept, size unknown, error reported.
    assert all(im.path is None and (im.width, im.height) == (0, 0) for im in train.images)
    assert [(p.severity, p.item, p.field) for p in train.problems] == [
        ("error", "img0003.jpg", "image"),
        ("error", "img0004.jpg", "image"),
    ]
    test = read_dataset(vott_examples / "datumaro-vott_csv" / "test-export.csv")
    assert test.num_boxes == 2 and [im.name for im in test.images] == ["img0001.jpg", "img0002.jpg"]


@pytest.fixture
def csv_dir(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    Image.new("RGB", (40, 30)).save(tmp_path / "b.jpg")
    return tmp_path


def test_crlf_and_size_from_the_image(csv_dir):
    path = csv_dir / "t-export.csv"
    path.write_bytes(f'{HEADER}\r\n"a.jpg",1.5,2,10,12.25,"dent"\r\n"b.jpg",0,0,40,30,"dent"'.encode())
    aset = read_vott_csv(path)
    assert aset.problems == []
    assert aset.by_name()["a.jpg"].boxes == (Box(1.5, 2, 10, 12.25, "dent"),)
    assert (aset.by_name()["a.jpg"].width, aset.by_name()["a.jpg"].height) == (40, 30)


def test_bad_rows_are_skipped_and_named(csv_dir):
    rows = [
        HEADER,
        '"a.jpg",1,2,10,12,"dent"',
        '"a.jpg",abc,2,10,12,"dent"',  # line 3
        '"a.jpg",1,2,10',  # line 4: too few cells
        '"",1,2,10,12,"dent"',  # line 5: no image
        '"b.jpg",1,2,10,12,""',  # line 6: no label
        '"b.jpg",35,2,50,12,"dent"',  # line 7: partly outside 40x30 -> clipped
    ]
    path = csv_dir / "t-export.csv"
    path.write_text("\n".join(rows))
    aset = read_vott_csv(path)
    assert aset.by_name()["a.jpg"].boxes == (Box(1, 2, 10, 12, "dent"),)
    assert aset.by_name()["b.jpg"].boxes == (Box(35, 2, 40, 12, "dent"),)
    got = [(p.severity, p.item, p.field) for p in aset.problems]
    assert got == [
        ("error", "line 3 (a.jpg)", "xmin"),
        ("error", "line 4", ""),
        ("error", "line 5", "image"),
        ("error", "line 6 (b.jpg)", "label"),
        ("warning", "line 7 (b.jpg)", "xmin..ymax"),
    ]
    with pytest.raises(AnnotationError, match=r"t-export\.csv \[line 3 \(a\.jpg\)\] xmin: not a number"):
        read_vott_csv(path, strict=True)


def test_wrong_header(csv_dir):
    path = csv_dir / "t-export.csv"
    path.write_text('"file","x","y"\n"a.jpg",1,2')
    aset = read_vott_csv(path)
    assert aset.images == [] and "header lacks" in aset.problems[0].message


def test_header_only_is_an_empty_set(csv_dir):
    path = csv_dir / "t-export.csv"
    path.write_text(HEADER)
    aset = read_vott_csv(path)
    assert aset.images == [] and aset.problems == []
