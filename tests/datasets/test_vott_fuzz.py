"""Property: whatever an export file holds, the VoTT JSON reader returns a set or raises AnnotationError.

Inputs are arbitrary JSON documents, export-shaped documents whose every field is sometimes arbitrary
JSON, mutations of a valid export (a value replaced by arbitrary JSON, a key deleted), and valid
exports cut short. Both strict and lenient modes are exercised; in lenient
mode every box kept must also be inside its image when the image size is known.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from datasets.model import AnnotatedSet
from datasets.problems import AnnotationError
from datasets.readers.vott_json import read_vott_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _region(rid: str, tags: list[str], left: float, top: float, width: float, height: float) -> dict:
    return {
        "id": rid,
        "type": "RECTANGLE",
        "tags": tags,
        "boundingBox": {"height": height, "width": width, "left": left, "top": top},
        "points": [{"x": left, "y": top}, {"x": left + width, "y": top + height}],
    }


def _asset(asset_id: str, name: str, state: int) -> dict:
    size = {"width": 16, "height": 8}
    return {
        "format": "png",
        "id": asset_id,
        "name": name,
        "path": f"file:/x/{name}",
        "size": size,
        "state": state,
    }


VALID = {
    "name": "fuzz",
    "securityToken": "fuzz Token",
    "tags": [{"name": "crazing", "color": "#e6194b"}, {"name": "patches", "color": "#ffe119"}],
    "version": "2.2.0",
    "assets": {
        "aaa": {
            "asset": {**_asset("aaa", "a.png", 2), "type": 1},
            "regions": [
                _region("r1", ["crazing"], 1, 1, 4, 3),
                _region("r2", ["crazing", "patches"], 10.5, 2.25, 9, 9),
            ],
            "version": "2.2.0",
        },
        "bbb": {"asset": {**_asset("bbb", "b.png", 1), "type": 1}, "regions": [], "version": "2.2.0"},
    },
}


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indexes) to a value inside ``node``, the root excluded."""
    found = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return found
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


@st.composite
def mutated_exports(draw) -> object:
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return doc


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a well-typed value, one time in four arbitrary JSON: every field gets broken often."""
    return st.one_of(strategy, strategy, strategy, JSON)


NUM = st.one_of(st.integers(-5, 30), st.floats(-50, 50))
POINT = maybe(st.fixed_dictionaries({"x": maybe(NUM), "y": maybe(NUM)}))
BBOX = maybe(st.fixed_dictionaries({k: maybe(NUM) for k in ("left", "top", "width", "height")}))
TAG = maybe(st.sampled_from(["crazing", "patches", "unknown", ""]))
REGION = maybe(
    st.fixed_dictionaries(
        {
            "id": maybe(st.text(max_size=4)),
            "type": maybe(st.sampled_from(["RECTANGLE", "SQUARE", "POLYGON", "POLYLINE", "POINT"])),
            "tags": maybe(st.lists(TAG, max_size=3)),
            "boundingBox": BBOX,
            "points": maybe(st.lists(POINT, max_size=4)),
        }
    )
)
ASSET = maybe(
    st.fixed_dictionaries(
        {
            "id": maybe(st.sampled_from(["aaa", "bbb", "zzz"])),
            "name": maybe(
                st.sampled_from(["a.png", "b.png", "../a.png", "/etc/hosts", "gone.png", "a.png/"])
            ),
            "size": maybe(st.fixed_dictionaries({"width": maybe(NUM), "height": maybe(NUM)})),
            "type": maybe(st.sampled_from([1, 2, 3])),
        }
    )
)
META = maybe(st.fixed_dictionaries({"asset": ASSET, "regions": maybe(st.lists(REGION, max_size=4))}))
EXPORTS = maybe(
    st.fixed_dictionaries(
        {
            "tags": maybe(st.lists(maybe(st.fixed_dictionaries({"name": TAG})), max_size=3)),
            "assets": maybe(st.dictionaries(st.sampled_from(["aaa", "bbb", "ccc"]), META, max_size=3)),
        }
    )
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz")
    Image.new("L", (16, 8)).save(path / "a.png")
    Image.new("L", (16, 8)).save(path / "b.png")
    return path


def _check(folder: Path, text: str) -> None:
    path = folder / "fuzz-export.json"
    path.write_text(text, encoding="utf-8")
    for strict in (False, True):
        try:
            aset = read_vott_json(path, strict=strict)
        except AnnotationError as exc:
            assert strict, "lenient mode must report, not raise"
            assert exc.problem.file == str(path)
            continue
        assert isinstance(aset, AnnotatedSet)
        for im in aset.images:
            for box in im.boxes:
                assert box.x2 > box.x1 and box.y2 > box.y1
                if im.width > 0:
                    assert 0 <= box.x1 and box.x2 <= im.width and 0 <= box.y1 and box.y2 <= im.height


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_valid_export_baseline(folder):
    path = folder / "fuzz-export.json"
    path.write_text(json.dumps(VALID))
    aset = read_vott_json(path, strict=True)
    assert aset.num_boxes == 3 and aset.by_name()["a.png"].boxes[1].x2 == 16  # clipped at the 16 px edge


@FUZZ
@given(doc=JSON)
def test_arbitrary_json(folder, doc):
    _check(folder, json.dumps(doc))


@FUZZ
@given(doc=mutated_exports())
def test_mutated_export(folder, doc):
    _check(folder, json.dumps(doc))


@FUZZ
@given(doc=EXPORTS)
def test_export_shaped_json(folder, doc):
    _check(folder, json.dumps(doc))


@FUZZ
@given(cut=st.integers(0, len(json.dumps(VALID, indent=4))))
def test_truncated_export(folder, cut):
    _check(folder, json.dumps(VALID, indent=4)[:cut])
