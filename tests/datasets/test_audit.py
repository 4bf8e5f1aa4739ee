"""The audit and its Markdown report, on the real NEU-DET split, hand-built sets and planted copies."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import defusedxml.ElementTree as SafeET
import pytest

from datasets.audit import audit, box_stats, duplicate_boxes, file_class, label_filename_mismatch
from datasets.model import NEU_DET_CLASSES, AnnotatedSet, Box, ImageRecord, Origin
from datasets.problems import Problem
from datasets.readers import read_dataset
from datasets.report import PLOTS, write_report
from tests.datasets.neu_facts import NEU_DEV_BOXES, NEU_DEV_IMAGES, NEU_DEV_PER_CLASS


@pytest.fixture(scope="module")
def neu_set(neu_root):
    return read_dataset(neu_root / "annotations")


@pytest.fixture(scope="module")
def neu_audit(neu_set):
    return audit(neu_set)


def test_neu_counts(neu_audit):
    assert neu_audit.images == NEU_DEV_IMAGES
    assert neu_audit.boxes == NEU_DEV_BOXES
    assert neu_audit.per_class == NEU_DEV_PER_CLASS
    assert neu_audit.errors == 0 and neu_audit.ok
    assert neu_audit.warnings == sum(p["severity"] == "warning" for p in neu_audit.problems) > 0


def test_neu_label_filename_mismatch_matches_the_xml(neu_root, neu_audit):
    # Independent count straight from the XML: objects whose <name> is not the file's class prefix.
    expected: Counter[tuple[str, str]] = Counter()
    for xml in sorted((neu_root / "annotations").glob("*.xml")):
        prefix = xml.stem.rsplit("_", 1)[0]
        for obj in SafeET.parse(xml).getroot().iter("object"):
            name = obj.findtext("name")
            if name != prefix:
                expected[(xml.stem + ".jpg", name)] += 1
    mm = neu_audit.label_filename_mismatch
    assert mm["images_with_class_prefix"] == NEU_DEV_IMAGES
    assert {(it["image"], it["label"]): it["count"] for it in mm["items"]} == dict(expected)
    assert mm["boxes"] == sum(expected.values()) == 159  # the full 1,800-image set has 188 in 123 files
    assert mm["files"] == len({img for img, _ in expected}) == 104
    assert mm["by_pair"]["scratches -> inclusion"] == 60


def test_neu_duplicate_boxes_in_the_development_split(neu_audit):
    # PROVENANCE names crazing_120, inclusion_62 and patches_198; inclusion_62 is held out.
    found = {(d["image"], d["label"], tuple(d["xyxy"]), d["count"]) for d in neu_audit.duplicate_boxes}
    assert found == {
        ("crazing_120.jpg", "crazing", (0.0, 80.0, 117.0, 146.0), 2),
        ("patches_198.jpg", "patches", (157.0, 67.0, 200.0, 158.0), 2),
    }


def test_neu_has_one_identical_image_pair_and_no_false_near_duplicates(neu_audit):
    nd = neu_audit.near_duplicates
    assert nd["hashed"] == NEU_DEV_IMAGES
    assert [(p["a"], p["b"], p["identical"]) for p in nd["within"]] == [
        ("patches_101.jpg", "patches_105.jpg", True)
    ]
    assert (
        nd["candidates_rejected"] > 1000
    )  # gradient-dominated images share dHashes; confirmation drops them
    dup_problems = [p for p in neu_audit.problems if p["field"] == "image"]
    assert len(dup_problems) == 1 and "patches_105.jpg" in dup_problems[0]["message"]
    assert dup_problems[0]["severity"] == "warning"


def test_neu_box_statistics(neu_audit):
    overall = neu_audit.box_stats["overall"]
    assert overall["width"]["count"] == NEU_DEV_BOXES
    assert 0 < overall["width"]["min"] <= overall["width"]["median"] <= overall["width"]["max"] <= 200
    assert overall["area"]["max"] == 200 * 200  # some boxes cover the whole image
    per_class = neu_audit.box_stats["per_class"]
    assert {k: v["height"]["count"] for k, v in per_class.items()} == NEU_DEV_PER_CLASS
    # scratches are long and thin, pitted surfaces large: medians say so
    assert per_class["scratches"]["height"]["median"] > 2 * per_class["scratches"]["width"]["median"]
    assert per_class["pitted_surface"]["area"]["median"] > overall["area"]["median"]


def test_neu_boxes_per_image(neu_audit):
    bpi = neu_audit.boxes_per_image
    hist = {int(k): v for k, v in bpi["histogram"].items()}
    assert sum(hist.values()) == NEU_DEV_IMAGES
    assert sum(k * v for k, v in hist.items()) == NEU_DEV_BOXES
    assert bpi["mean"] == pytest.approx(NEU_DEV_BOXES / NEU_DEV_IMAGES)
    assert bpi["images_without_boxes"] == 0 and 0 not in hist  # NEU-DET has no defect-free images


def test_to_dict_is_json(neu_audit):
    data = json.loads(json.dumps(neu_audit.to_dict()))
    assert {"images", "boxes", "per_class", "problems", "errors", "box_stats", "near_duplicates"} <= set(data)


def _record(name: str, boxes: list[Box], *, file: str = "ann.json") -> ImageRecord:
    return ImageRecord(name=name, width=100, height=100, boxes=tuple(boxes), origin=Origin(file, name))


def test_hand_built_set_zero_boxes_duplicates_and_prefixes():
    aset = AnnotatedSet(
        images=[
            _record(
                "rolled-in_scale_3.jpg", [Box(0, 0, 10, 10, "rolled-in_scale"), Box(5, 5, 9, 9, "inclusion")]
            ),
            _record("clean_1.png", []),
            _record(
                "crazing_7.jpg",
                [
                    Box(1, 2, 30, 40, "crazing"),
                    Box(1 + 5e-7, 2, 30, 40 - 5e-7, "crazing"),  # within 1e-6: a repeat
                    Box(1 + 1e-3, 2, 30, 40, "crazing"),  # 1e-3 off: a different box
                    Box(1, 2, 30, 40, "patches"),  # same place, other label: not a repeat
                ],
            ),
        ],
        class_names=("crazing", "inclusion", "patches", "rolled-in_scale"),
        problems=[Problem("error", "ann.json", "x", "regions[0].tags[0]", "unknown tag 'rust'; box dropped")],
        source="hand-built",
        format="test",
    )
    result = audit(aset, near_dup_distance=None)  # no files: no image comparison
    assert result.images == 3 and result.boxes == 6
    assert result.errors == 1 and not result.ok
    assert result.near_duplicates == {}
    assert result.per_class == {"crazing": 3, "inclusion": 1, "patches": 1, "rolled-in_scale": 1}
    assert result.boxes_per_image["images_without_boxes_names"] == ["clean_1.png"]
    assert result.boxes_per_image["histogram"] == {"0": 1, "2": 1, "4": 1}
    assert [(d["image"], d["count"]) for d in result.duplicate_boxes] == [("crazing_7.jpg", 2)]
    mm = result.label_filename_mismatch
    assert mm["images_with_class_prefix"] == 2  # clean_1.png names no class
    assert mm["by_pair"] == {"crazing -> patches": 1, "rolled-in_scale -> inclusion": 1}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rolled-in_scale_12.jpg", "rolled-in_scale"),
        ("pitted_surface_1.jpg", "pitted_surface"),
        ("crazing.png", "crazing"),
        ("crazingX_1.jpg", None),
        ("sub/scratches-4.bmp", "scratches"),
        ("img_001.jpg", None),
    ],
)
def test_file_class(name, expected):
    assert file_class(name, NEU_DET_CLASSES) == expected


def test_empty_set():
    empty = AnnotatedSet(images=[], class_names=NEU_DET_CLASSES)
    result = audit(empty)
    assert result.images == result.boxes == result.errors == 0
    assert box_stats(empty)["overall"]["width"] == {"count": 0}
    assert duplicate_boxes(empty) == [] and label_filename_mismatch(empty)["boxes"] == 0
    assert result.near_duplicates["within"] == []


def _voc_copy(neu_root: Path, dest: Path, stems: list[str], renames: dict[str, str] | None = None) -> Path:
    """A small VOC set (annotations/ + images/) made of real NEU-DET files; ``renames`` gives new stems."""
    (dest / "annotations").mkdir(parents=True)
    (dest / "images").mkdir()
    for stem in stems:
        new = (renames or {}).get(stem, stem)
        xml = (neu_root / "annotations" / f"{stem}.xml").read_text(encoding="utf-8")
        xml = xml.replace(f"<filename>{stem}", f"<filename>{new}")
        (dest / "annotations" / f"{new}.xml").write_text(xml, encoding="utf-8")
        shutil.copyfile(neu_root / "images" / f"{stem}.jpg", dest / "images" / f"{new}.jpg")
    return dest / "annotations"


def _brighten(path: Path, beta: int = 12) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    cv2.imwrite(str(path), cv2.convertScaleAbs(image, alpha=1.0, beta=beta), [cv2.IMWRITE_JPEG_QUALITY, 92])


STEMS = [
    "crazing_10",
    "inclusion_10",
    "patches_11",
    "pitted_surface_107",
    "pitted_surface_194",
    "scratches_10",
]


def test_planted_copy_and_brightened_copy_are_found(neu_root, tmp_path):
    ann = _voc_copy(neu_root, tmp_path / "set", STEMS)
    _voc_copy(
        neu_root,
        tmp_path / "extra",
        ["crazing_10", "scratches_10"],
        {"crazing_10": "crazing_900", "scratches_10": "scratches_901"},
    )
    for name in ("crazing_900", "scratches_901"):
        shutil.copyfile(tmp_path / "extra" / "annotations" / f"{name}.xml", ann / f"{name}.xml")
        shutil.copyfile(tmp_path / "extra" / "images" / f"{name}.jpg", ann.parent / "images" / f"{name}.jpg")
    _brighten(ann.parent / "images" / "scratches_901.jpg")

    result = audit(read_dataset(ann))
    pairs = {(p["a"], p["b"]): p for p in result.near_duplicates["within"]}
    assert set(pairs) == {("crazing_10.jpg", "crazing_900.jpg"), ("scratches_10.jpg", "scratches_901.jpg")}
    assert pairs[("crazing_10.jpg", "crazing_900.jpg")]["identical"] is True
    brightened = pairs[("scratches_10.jpg", "scratches_901.jpg")]
    assert (
        brightened["identical"] is False and brightened["distance"] <= 4 and brightened["correlation"] >= 0.9
    )
    # pitted_surface_107 and _194 share a dHash (distance 0) but are different steel: not reported
    assert result.near_duplicates["candidates_rejected"] >= 1
    assert result.errors == 0


def test_against_finds_images_shared_between_sets(neu_root, tmp_path):
    train = read_dataset(_voc_copy(neu_root, tmp_path / "train", STEMS))
    test_ann = _voc_copy(
        neu_root, tmp_path / "test", ["patches_11", "rolled-in_scale_10"], {"patches_11": "patches_999"}
    )
    _brighten(test_ann.parent / "images" / "patches_999.jpg")
    result = audit(train, against=read_dataset(test_ann))
    other = result.near_duplicates["against"]
    assert other["hashed"] == 2
    assert [(p["a"], p["b"]) for p in other["pairs"]] == [("patches_11.jpg", "patches_999.jpg")]
    leak = [p for p in result.problems if "patches_999.jpg" in p["message"]]
    assert len(leak) == 1 and leak[0]["file"].endswith("patches_11.xml")


def test_unreadable_image_is_a_warning_not_a_crash(neu_root, tmp_path):
    ann = _voc_copy(neu_root, tmp_path / "set", ["crazing_10", "inclusion_10"])
    good = read_dataset(ann)
    (ann.parent / "images" / "inclusion_10.jpg").write_bytes(b"\xff\xd8 truncated")  # after reading
    result = audit(good)
    assert result.near_duplicates["hashed"] == 1
    assert any("cannot decode" in p["message"] and p["item"] == "inclusion_10.jpg" for p in result.problems)


def test_write_report(neu_set, neu_audit, tmp_path):
    report = write_report(neu_audit, neu_set, tmp_path / "report")
    assert report == tmp_path / "report" / "report.md"
    text = report.read_text(encoding="utf-8")
    assert "1440 images, 3366 boxes, no errors" in text
    assert "| inclusion | 811 |" in text
    assert "patches_101.jpg | patches_105.jpg | 0 | 1.000 | yes" in text
    assert "crazing_120.jpg" in text and "scratches -> inclusion | 60" in text
    for name in PLOTS:
        assert f"]({name})" in text
        data = (tmp_path / "report" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_report_of_a_set_with_errors_and_no_boxes(tmp_path):
    aset = AnnotatedSet(
        images=[_record("a.jpg", [])],
        class_names=("crazing",),
        problems=[Problem("error", "/x/ann.csv", "line 3", "xmin", "not a number: 'a|b'")],
        source="broken.csv",
    )
    text = write_report(audit(aset), aset, tmp_path).read_text(encoding="utf-8")
    assert "**1 errors**" in text
    assert "| error | ann.csv | line 3 | xmin | not a number: 'a\\|b' |" in text  # pipes escaped
    assert (tmp_path / PLOTS[1]).is_file()  # an empty scatter still renders
