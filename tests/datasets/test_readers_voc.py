"""Pascal VOC reader on the real NEU-DET annotations and on small VoTT-style / broken files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from datasets.model import NEU_DET_CLASSES, Box
from datasets.problems import AnnotationError
from datasets.readers import read_dataset
from datasets.readers.voc import read_voc
from tests.datasets.neu_facts import NEU_DEV_BOXES, NEU_DEV_IMAGES, NEU_DEV_PER_CLASS


@pytest.fixture(scope="module")
def neu_voc(neu_root):
    return read_dataset(neu_root / "annotations")


def test_neu_counts(neu_voc):
    assert neu_voc.format == "voc"
    assert len(neu_voc.images) == NEU_DEV_IMAGES
    assert neu_voc.num_boxes == NEU_DEV_BOXES
    assert neu_voc.per_class() == NEU_DEV_PER_CLASS
    assert neu_voc.class_names == NEU_DET_CLASSES


def test_neu_reads_in_strict_mode(neu_root):
    """Warnings (duplicates, bare file names) never stop a strict read; NEU-DET has no errors."""
    assert read_dataset(neu_root / "annotations", strict=True).num_boxes == NEU_DEV_BOXES


def test_neu_has_no_errors_and_every_image_resolved(neu_voc, neu_root):
    assert [p for p in neu_voc.problems if p.severity == "error"] == []
    for im in neu_voc.images:
        assert im.path == neu_root / "images" / im.name
        assert (im.width, im.height) == (200, 200)
        assert re.fullmatch(r"[0-9a-f]{64}", im.sha256)


def test_neu_one_based_inclusive_is_converted(neu_voc, neu_root):
    # crazing_1.xml: <xmin>2</xmin><ymin>2</ymin><xmax>193</xmax><ymax>194</ymax>
    text = (neu_root / "annotations" / "crazing_1.xml").read_text()
    assert "<xmin>2</xmin>" in text and "<xmax>193</xmax>" in text
    assert neu_voc.by_name()["crazing_1.jpg"].boxes == (Box(1.0, 1.0, 193.0, 194.0, "crazing"),)


def test_neu_duplicate_boxes_are_warned_and_kept(neu_voc):
    dups = [p for p in neu_voc.problems if "duplicate" in p.message]
    assert all(p.severity == "warning" for p in dups)
    files = {Path(p.file).stem for p in dups}
    # inclusion_62 is one of NEU-DET's three, but it is in the held-out test split.
    assert files == {"crazing_120", "patches_198"}
    crazing_120 = neu_voc.by_name()["crazing_120.jpg"].boxes
    assert len(crazing_120) == 5 and len(set(crazing_120)) == 4


def test_neu_filenames_without_extension_are_completed(neu_voc, neu_root):
    bare = {
        p.stem
        for p in (neu_root / "annotations").glob("*.xml")
        if not re.search(r"<filename>[^<]*\.jpg</filename>", p.read_text())
    }
    assert len(bare) == 138  # 174 in all of NEU-DET; 138 in this split
    warned = {Path(p.file).stem for p in neu_voc.problems if p.field == "filename"}
    assert warned == bare
    names = neu_voc.by_name()
    assert all(f"{stem}.jpg" in names for stem in bare)


def test_labels_come_from_objects_not_file_names(neu_voc):
    crossed = [
        (im.name, b.label) for im in neu_voc.images for b in im.boxes if not im.name.startswith(b.label)
    ]
    assert len(crossed) == 159  # 188 in all of NEU-DET
    assert any(name.startswith("scratches_") and label == "inclusion" for name, label in crossed)


def _voc_xml(
    objects: list[tuple[str, object, object, object, object]],
    *,
    filename: str = "a.jpg",
    size: tuple[int, int] | None = (20, 10),
    verified: bool = False,
    folder: str = "x",
) -> str:
    attrs = ' verified="yes"' if verified else ""
    size_xml = (
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>1</depth></size>" if size else ""
    )
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        "</bndbox></object>"
        for n, a, b, c, d in objects
    )
    head = f"<folder>{folder}</folder><filename>{filename}</filename>"
    return f"<annotation{attrs}>{head}{size_xml}{objs}</annotation>"


@pytest.fixture
def voc_dir(tmp_path):
    """A NEU-like layout: annotations/ beside images/ holding a 20x10 image a.jpg."""
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.jpg")
    return tmp_path


def _write(voc_dir: Path, text: str, stem: str = "a") -> Path:
    path = voc_dir / "annotations" / f"{stem}.xml"
    path.write_text(text)
    return path


def test_vott_voc_export_is_zero_based_and_unchanged(tmp_path):
    # VoTT's own export layout: Annotations/ + JPEGImages/, verified="yes", <folder>Annotation</folder>.
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "JPEGImages" / "a.jpg")
    xml = _voc_xml([("dog", 1, 2, 5, 6), ("dog", 0, 0, 3, 3)], verified=True, folder="Annotation")
    (tmp_path / "Annotations" / "a.xml").write_text(xml)
    aset = read_dataset(tmp_path)
    assert aset.images[0].boxes == (Box(1, 2, 5, 6, "dog"), Box(0, 0, 3, 3, "dog"))
    assert aset.images[0].path == tmp_path / "JPEGImages" / "a.jpg"
    assert aset.problems == []


def test_float_coordinates_mean_zero_based(voc_dir):
    _write(voc_dir, _voc_xml([("dog", 1.5, 2, 5.25, 6)]))
    assert read_voc(voc_dir / "annotations").images[0].boxes == (Box(1.5, 2, 5.25, 6, "dog"),)


@pytest.mark.parametrize(
    ("convention", "expected"),
    [
        ("auto", Box(0, 1, 5, 6, "dog")),
        ("one-based", Box(0, 1, 5, 6, "dog")),
        ("zero-based", Box(1, 2, 5, 6, "dog")),
    ],
)
def test_explicit_convention(voc_dir, convention, expected):
    _write(voc_dir, _voc_xml([("dog", 1, 2, 5, 6)]))
    aset = read_dataset(voc_dir / "annotations", voc_convention=convention)
    assert aset.images[0].boxes == (expected,)


def test_unknown_convention_is_rejected(voc_dir):
    with pytest.raises(ValueError, match="convention"):
        read_voc(voc_dir, convention="half-based")  # type: ignore[arg-type]


def test_image_without_objects_is_kept(voc_dir):
    _write(voc_dir, _voc_xml([]))
    aset = read_voc(voc_dir / "annotations")
    assert len(aset.images) == 1 and aset.images[0].boxes == () and aset.problems == []


def test_box_geometry_problems(voc_dir):
    objs = [
        ("dog", 15, 5, 30, 8),  # partly outside 20x10 (one-based: x 14..30) -> clipped, warning
        ("dog", 25, 1, 30, 5),  # wholly outside -> error, dropped
        ("dog", 5, 5, 3, 8),  # negative width -> error, dropped
        ("dog", 2, 2, 4, 4),  # fine
    ]
    _write(voc_dir, _voc_xml(objs))
    aset = read_voc(voc_dir / "annotations")
    assert aset.images[0].boxes == (Box(14, 4, 20, 8, "dog"), Box(1, 1, 4, 4, "dog"))
    by_field = {p.field: p for p in aset.problems}
    assert (
        by_field["object[0].bndbox"].severity == "warning"
        and "clipped" in by_field["object[0].bndbox"].message
    )
    assert (
        by_field["object[1].bndbox"].severity == "error" and "outside" in by_field["object[1].bndbox"].message
    )
    assert by_field["object[2].bndbox"].severity == "error" and "area" in by_field["object[2].bndbox"].message
    assert all(p.file.endswith("a.xml") and p.item == "a.jpg" for p in aset.problems)


def test_non_numeric_and_missing_fields(voc_dir):
    xml = _voc_xml([("dog", "abc", 1, 3, 3), ("dog", 1, 1, 3, 3)]).replace("<ymax>3</ymax>", "", 1)
    _write(voc_dir, xml)
    aset = read_voc(voc_dir / "annotations")
    fields = {p.field for p in aset.problems if p.severity == "error"}
    assert "object[0].bndbox.xmin" in fields and "object[0].bndbox.ymax" in fields
    assert aset.images[0].boxes == (Box(0, 0, 3, 3, "dog"),)
    with pytest.raises(AnnotationError, match=r"a\.xml \[a\.jpg\] object\[0\]\.bndbox\.xmin: not a number"):
        read_voc(voc_dir / "annotations", strict=True)


def test_unknown_label_drops_only_that_box(voc_dir):
    _write(voc_dir, _voc_xml([("crazing", 1, 1, 3, 3), ("rust", 2, 2, 5, 5)]))
    aset = read_voc(voc_dir / "annotations", class_names=NEU_DET_CLASSES)
    assert aset.images[0].boxes == (Box(0, 0, 3, 3, "crazing"),)
    (err,) = aset.problems
    assert err.severity == "error" and err.field == "object[1].name" and "unknown tag 'rust'" in err.message


def test_class_names_default_to_labels_seen_outside_neu(voc_dir):
    _write(voc_dir, _voc_xml([("zebra", 1, 1, 3, 3), ("ant", 2, 2, 5, 5)]))
    assert read_voc(voc_dir / "annotations").class_names == ("ant", "zebra")


def test_malformed_xml_skips_the_file(voc_dir):
    _write(voc_dir, _voc_xml([("dog", 1, 1, 3, 3)]))
    _write(voc_dir, "<annotation><filename>b.jpg</filename><object>", stem="b")
    aset = read_voc(voc_dir / "annotations")
    assert [im.name for im in aset.images] == ["a.jpg"]
    (err,) = [p for p in aset.problems if p.severity == "error"]
    assert err.file.endswith("b.xml") and "malformed XML" in err.message
    with pytest.raises(AnnotationError, match="malformed XML"):
        read_voc(voc_dir / "annotations", strict=True)


def test_entity_expansion_is_refused(voc_dir):
    bomb = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx">]><annotation>&x;</annotation>'
    _write(voc_dir, bomb)
    aset = read_voc(voc_dir / "annotations")
    assert aset.images == [] and "malformed XML" in aset.problems[0].message


def test_size_disagreeing_with_file_is_a_warning(voc_dir):
    _write(voc_dir, _voc_xml([("dog", 1, 1, 3, 3)], size=(200, 200)))
    aset = read_voc(voc_dir / "annotations")
    im = aset.images[0]
    assert (im.width, im.height) == (20, 10)
    (warn,) = aset.problems
    assert warn.severity == "warning" and warn.field == "size" and "200x200" in warn.message


def test_missing_image_is_an_error_but_boxes_are_kept(voc_dir):
    _write(voc_dir, _voc_xml([("dog", 1, 1, 3, 3)], filename="gone.jpg"))
    aset = read_voc(voc_dir / "annotations")
    (im,) = aset.images
    assert im.path is None and im.sha256 == "" and im.boxes == (Box(0, 0, 3, 3, "dog"),)
    (err,) = aset.problems
    assert err.severity == "error" and err.field == "filename" and "image not found" in err.message


@pytest.mark.parametrize(
    "name", ["../images/a.jpg", "/etc/passwd", "/tmp/a.jpg", "C:/Windows/a.jpg", "..\\a.jpg"]
)
def test_image_names_cannot_escape(voc_dir, name):
    _write(voc_dir, _voc_xml([("dog", 1, 1, 3, 3)], filename=name))
    aset = read_voc(voc_dir / "annotations")
    assert aset.images[0].path is None
    assert any(p.severity == "error" and p.field == "filename" for p in aset.problems)


def test_unreadable_image_is_an_error(voc_dir):
    (voc_dir / "images" / "a.jpg").write_bytes(b"not a jpeg")
    _write(voc_dir, _voc_xml([("dog", 1, 1, 3, 3)]))
    aset = read_voc(voc_dir / "annotations")
    assert aset.images[0].path is None
    assert "unreadable image" in aset.problems[0].message


def test_missing_path_raises(tmp_path):
    with pytest.raises(AnnotationError, match="no such"):
        read_voc(tmp_path / "nope")
