"""Reproducible, stratified train/val splits on the real NEU-DET split and hand-built sets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections import Counter

import pytest

from datasets.images import sha256_file
from datasets.model import AnnotatedSet, Box, ImageRecord
from datasets.readers import read_dataset
from datasets.split import (
    NO_BOXES,
    Split,
    SplitError,
    apply_split,
    dominant_label,
    make_split,
    read_split,
    verify_split,
    write_split,
)


@pytest.fixture(scope="module")
def neu_set(neu_root):
    return read_dataset(neu_root / "annotations")


@pytest.fixture(scope="module")
def neu_split(neu_set):
    return make_split(neu_set, val_fraction=0.2, seed=0)


def _shuffled(aset: AnnotatedSet, seed: int) -> AnnotatedSet:
    images = list(aset.images)
    random.Random(seed).shuffle(images)
    return dataclasses.replace(aset, images=images)


def test_sides_partition_the_set(neu_set, neu_split):
    assert set(neu_split.train).isdisjoint(neu_split.val)
    assert set(neu_split.train) | set(neu_split.val) == {im.name for im in neu_set.images}
    assert len(neu_split.val) == 288  # 240 images per dominant class x 0.2, give or take a stratum's rounding
    assert neu_split.class_names == neu_set.class_names
    by_name = neu_set.by_name()
    assert all(
        neu_split.train[n] == by_name[n].sha256 and len(neu_split.train[n]) == 64 for n in neu_split.train
    )


def test_same_seed_same_file(neu_set, neu_split, tmp_path):
    first = write_split(neu_split, tmp_path / "a.json")
    second = write_split(make_split(neu_set, val_fraction=0.2, seed=0), tmp_path / "b.json")
    assert first.read_bytes() == second.read_bytes()


def test_input_order_does_not_matter(neu_set, neu_split):
    for seed in (1, 2):
        again = make_split(_shuffled(neu_set, seed), val_fraction=0.2, seed=0)
        assert again == neu_split
        assert again.split_sha256 == neu_split.split_sha256


def test_different_seed_different_split(neu_set, neu_split):
    other = make_split(neu_set, val_fraction=0.2, seed=1)
    assert other.val != neu_split.val and len(other.val) == len(neu_split.val)
    assert other.split_sha256 != neu_split.split_sha256


def test_stratified_by_dominant_label(neu_set, neu_split):
    strata = Counter(dominant_label(im) for im in neu_set.images)
    val_strata = Counter(dominant_label(im) for im in neu_set.images if im.name in neu_split.val)
    for label, n in strata.items():
        assert val_strata[label] == math.floor(n * 0.2 + 0.5), label  # exact per stratum
    train, val = apply_split(neu_set, neu_split)
    totals, in_val = neu_set.per_class(), val.per_class()
    for name, total in totals.items():
        assert abs(in_val[name] / total - 0.2) < 0.05, name  # box shares follow
    assert train.num_boxes + val.num_boxes == neu_set.num_boxes


def test_identical_images_stay_on_one_side(neu_set):
    # patches_101.jpg and patches_105.jpg are byte-identical in NEU-DET: a copy in val would leak.
    sides = []
    for seed in range(12):
        split = make_split(neu_set, val_fraction=0.5, seed=seed)
        assert ("patches_101.jpg" in split.val) == ("patches_105.jpg" in split.val)
        sides.append("patches_101.jpg" in split.val)
    assert any(sides) and not all(sides)  # the pair does move between seeds, together


def test_round_trip_and_hash(neu_split, tmp_path):
    path = write_split(neu_split, tmp_path / "split.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["seed"] == 0 and data["val_fraction"] == 0.2
    assert data["split_sha256"] == neu_split.split_sha256
    assert data["train"][0] == {"name": "crazing_1.jpg", "sha256": neu_split.train["crazing_1.jpg"]}
    assert read_split(path) == neu_split


def test_hand_edited_split_is_refused(neu_split, tmp_path):
    path = write_split(neu_split, tmp_path / "split.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["val"].append(data["train"].pop(0))  # move one image by hand
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SplitError, match="split_sha256"):
        read_split(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("train"), "train"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d["val"].append({"name": d["train"][0]["name"], "sha256": "x"}), "both train and val"),
        (lambda d: d["val"].append({"name": 3}), r"val\[\d+\]"),
    ],
)
def test_malformed_split_files(neu_split, tmp_path, edit, message):
    data = neu_split.to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SplitError, match=message):
        read_split(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(SplitError, match="cannot read"):
        read_split(path)


def test_verify_reports_changed_missing_and_new_images(neu_set, neu_split):
    assert verify_split(neu_split, neu_set) == []
    images = [im for im in neu_set.images if im.name != "crazing_10.jpg"]  # one image gone
    changed_name = next(iter(neu_split.val))
    images = [dataclasses.replace(im, sha256="0" * 64) if im.name == changed_name else im for im in images]
    images.append(dataclasses.replace(images[0], name="crazing_9999.jpg"))  # one new image
    problems = verify_split(neu_split, dataclasses.replace(neu_set, images=images))
    summary = sorted((p.severity, p.item, p.field) for p in problems)
    assert summary == [
        ("error", "crazing_10.jpg", "train" if "crazing_10.jpg" in neu_split.train else "val"),
        ("error", changed_name, "sha256"),
        ("warning", "crazing_9999.jpg", "split"),
    ]
    with pytest.raises(SplitError, match="2 errors"):
        apply_split(dataclasses.replace(neu_set, images=images), neu_split)


def _img(name: str, labels: list[str]) -> ImageRecord:
    boxes = tuple(Box(i, i, i + 5, i + 5, label) for i, label in enumerate(labels))
    return ImageRecord(
        name=name, width=50, height=50, boxes=boxes, sha256=hashlib.sha256(name.encode()).hexdigest()
    )


@pytest.mark.parametrize(
    ("labels", "expected"),
    [([], NO_BOXES), (["b", "a"], "a"), (["b", "a", "b"], "b"), (["c"], "c"), (["z", "y", "y", "z"], "y")],
)
def test_dominant_label(labels, expected):
    assert dominant_label(_img("x.jpg", labels)) == expected


def test_images_without_boxes_form_their_own_stratum():
    images = [_img(f"empty_{i}.jpg", []) for i in range(10)] + [_img(f"a_{i}.jpg", ["a"]) for i in range(5)]
    split = make_split(AnnotatedSet(images=images, class_names=("a",)), val_fraction=0.2, seed=3)
    assert sum(n.startswith("empty_") for n in split.val) == 2
    assert sum(n.startswith("a_") for n in split.val) == 1
    assert len(split.train) == 12


def test_zero_fraction_and_bad_inputs(tmp_path):
    aset = AnnotatedSet(images=[_img("a.jpg", ["a"]), _img("b.jpg", [])], class_names=("a",))
    assert make_split(aset, val_fraction=0.0).val == {}
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(SplitError, match="val_fraction"):
            make_split(aset, val_fraction=bad)
    twice = AnnotatedSet(images=[_img("a.jpg", []), _img("a.jpg", [])], class_names=())
    with pytest.raises(SplitError, match="duplicate image names"):
        make_split(twice)
    no_file = AnnotatedSet(images=[ImageRecord(name="gone.jpg", width=1, height=1)], class_names=())
    with pytest.raises(SplitError, match="gone.jpg"):
        make_split(no_file)


def test_hash_computed_from_the_file_when_the_reader_left_it_empty(neu_root):
    path = neu_root / "images" / "crazing_10.jpg"
    record = ImageRecord(name="crazing_10.jpg", width=200, height=200, path=path)
    split = make_split(AnnotatedSet(images=[record], class_names=("crazing",)), val_fraction=0.0)
    assert split.train == {"crazing_10.jpg": sha256_file(path)}
    assert isinstance(split, Split)
