"""Image lookup and inspection (datasets.images) and the shared checks (datasets.validate)."""

from __future__ import annotations

import hashlib
import math

import pytest
from PIL import Image

from datasets.images import UnreadableImageError, image_size, inspect_image, resolve_image, sha256_file
from datasets.model import NEU_DET_CLASSES, Box
from datasets.problems import AnnotationError, ProblemLog
from datasets.validate import RawBox, check_box, choose_class_names, number


@pytest.fixture
def dirs(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    (second / "sub").mkdir(parents=True)
    Image.new("RGB", (7, 3)).save(second / "a.png")
    Image.new("RGB", (7, 3)).save(second / "sub" / "b.png")
    (tmp_path / "secret.png").write_bytes(b"x")
    return [None, first, second]


def test_resolve_searches_in_order(dirs):
    log = ProblemLog()
    assert resolve_image("a.png", dirs, log, "f.json", "item") == dirs[2] / "a.png"
    assert resolve_image("sub/b.png", dirs, log, "f.json", "item") == dirs[2] / "sub" / "b.png"
    assert log.problems == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../secret.png", "escapes"),
        ("sub/../../secret.png", "escapes"),
        ("..\\secret.png", "escapes"),
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share\\x.png", "absolute"),
        ("C:secret.png", "drive letter"),
        ("c:/x/secret.png", "drive letter"),
        ("", "empty"),
        ("a\x00.png", "NUL"),
    ],
)
def test_resolve_rejects_escaping_names(dirs, name, reason):
    log = ProblemLog()
    assert resolve_image(name, dirs, log, "f.json", "asset 1", field="asset.name") is None
    (problem,) = log.problems
    assert (problem.severity, problem.file, problem.item, problem.field) == (
        "error",
        "f.json",
        "asset 1",
        "asset.name",
    )
    assert reason in problem.message


def test_resolve_missing_lists_folders_and_raises_when_strict(dirs):
    log = ProblemLog()
    assert resolve_image("nope.png", dirs, log, "f.json", "x") is None
    assert "image not found" in log.problems[0].message and str(dirs[1]) in log.problems[0].message
    with pytest.raises(AnnotationError, match="nope.png"):
        resolve_image("nope.png", dirs, ProblemLog(strict=True), "f.json", "x")


def test_resolve_survives_absurd_names(dirs):
    log = ProblemLog()
    assert resolve_image("x" * 5000 + ".png", dirs, log, "f", "i") is None
    assert "image not found" in log.problems[0].message


def test_neu_image_size_and_hash(neu_root):
    path = neu_root / "images" / "crazing_1.jpg"
    assert image_size(path) == (200, 200)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_file(path) == digest
    assert inspect_image(path) == (200, 200, digest)


def test_size_comes_from_the_header_alone(neu_root, tmp_path):
    """A JPEG cut after its header still reports its size: nothing is decoded."""
    data = (neu_root / "images" / "crazing_1.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 3])
    assert image_size(cut) == (200, 200)


def test_unreadable_images(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"definitely not an image")
    with pytest.raises(UnreadableImageError, match="junk.jpg"):
        image_size(junk)
    with pytest.raises(UnreadableImageError):
        inspect_image(junk)
    with pytest.raises(UnreadableImageError):
        inspect_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize(
    ("value", "text", "expected"),
    [
        (3, False, 3.0),
        (2.5, False, 2.5),
        ("2.5", False, None),  # JSON numbers must be numbers
        ("2.5", True, 2.5),  # XML/CSV cells are text
        (" 7 ", True, 7.0),
        ("abc", True, None),
        (True, False, None),
        (None, False, None),
        (float("nan"), False, None),
        (math.inf, False, None),
        ("inf", True, None),
        (10**400, False, None),
        ([1], False, None),
    ],
)
def test_number(value, text, expected):
    log = ProblemLog()
    assert number(value, log, "f", "i", "fld", text=text) == expected
    assert len(log.errors) == (expected is None)


_OK = (Box(1, 1, 4, 4, "a"), [])
_CASES = [
    ((1, 1, 4, 4), 10, 10, _OK),
    ((-2, 1, 4, 12), 10, 10, (Box(0, 1, 4, 10, "a"), ["warning"])),
    ((10, 1, 14, 4), 10, 10, (None, ["error"])),  # starts at the right edge: wholly outside
    ((-5, 1, 0, 4), 10, 10, (None, ["error"])),
    ((4, 1, 4, 4), 10, 10, (None, ["error"])),  # zero width
    ((4, 4, 1, 1), 10, 10, (None, ["error"])),
    (
        (500, 500, 600, 600),
        0,
        0,
        (Box(500, 500, 600, 600, "a"), []),
    ),  # size unknown: only area and sign checked
    ((-1, 1, 4, 4), 0, 0, (Box(0, 1, 4, 4, "a"), ["warning"])),
]


@pytest.mark.parametrize(("xyxy", "width", "height", "expected"), _CASES)
def test_check_box(xyxy, width, height, expected):
    log = ProblemLog()
    box = check_box(
        RawBox(*xyxy, label="a", field="f"), width=width, height=height, log=log, file="x", item="i"
    )
    assert (box, [p.severity for p in log.problems]) == expected


@pytest.mark.parametrize(
    ("labels", "declared", "expected"),
    [
        (["crazing", "patches"], None, NEU_DET_CLASSES),
        ([], None, NEU_DET_CLASSES),
        (["zebra", "crazing"], None, ("crazing", "zebra")),
        (["zebra"], ["b", "a", "b"], ("b", "a")),
    ],
)
def test_choose_class_names(labels, declared, expected):
    assert choose_class_names(labels, declared) == expected
