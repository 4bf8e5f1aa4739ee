"""Reviewed detections out as a VoTT JSON export: boxes land on the right pixels of real NEU-DET crops,
labels follow the latest review, and the project's own VoTT reader reads the export back."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dashboard import queries
from dashboard.colors import class_colour
from dashboard.export import box_in_crop, export_zip, reviewed_set, write_export
from dashboard.filters import Filters
from datasets.model import NEU_DET_CLASSES
from datasets.readers import read_dataset
from inspection.storage.db import make_engine
from tests.dashboard.conftest import CROP_MARGIN, Seed


@pytest.mark.parametrize(
    ("xyxy", "crop_wh", "frame_wh", "expected"),
    [
        ((10, 20, 50, 60), (56, 56), (200, 200), (8, 8, 48, 48)),  # margin 8 all round
        ((0, 0, 30, 30), (38, 38), (200, 200), (0, 0, 30, 30)),  # clipped at the near edges
        ((180, 170, 200, 200), (28, 38), (200, 200), (8, 8, 28, 38)),  # clipped at the far edges
        ((10.4, 20.6, 50.2, 60.9), (41, 41), (200, 200), (0.4, 0.6, 40.2, 40.9)),  # no margin, fractions
        ((10.4, 20.6, 50.2, 60.9), (56, 56), (200, 200), (8.4, 8.6, 48.2, 48.9)),  # the daemon: int(x +- 8)
        ((3.5, 4.5, 30.5, 40.5), (38, 48), (200, 200), (3.5, 4.5, 30.5, 40.5)),  # ... clipped at 0
        ((10, 20, 50, 60), (56, 56), (None, None), (8, 8, 48, 48)),  # frame size unknown
        ((10, 20, 50, 60), (10, 10), (200, 200), None),  # smaller than the box: not its crop
    ],
)
def test_box_in_crop(xyxy, crop_wh, frame_wh, expected) -> None:
    got = box_in_crop(xyxy, crop_wh, frame_wh)
    assert got == (pytest.approx(expected) if expected else None)


@pytest.fixture
def reviewed(seeded_url: str) -> pd.DataFrame:
    eng = make_engine(seeded_url)
    rows = queries.reviewed_for_export(eng, Filters())
    eng.dispose()
    return rows


def _resolve(p: str | None) -> Path | None:
    return Path(p) if p and Path(p).is_file() else None


def test_labels_follow_the_latest_review_and_boxes_cover_the_defect(
    reviewed: pd.DataFrame, seed: Seed
) -> None:
    aset = reviewed_set(reviewed, _resolve, class_names=("crazing", "patches"), source="db")
    d1, d2, d3 = seed.reviewed_defect_ids
    by_name = aset.by_name()
    assert list(by_name) == [f"defect-{d}.png" for d in (d1, d2, d3)]
    assert by_name[f"defect-{d1}.png"].boxes == ()  # confirmed, then rejected: background
    assert by_name[f"defect-{d2}.png"].boxes == ()
    (box,) = by_name[f"defect-{d3}.png"].boxes
    row = reviewed.set_index("defect_id").loc[d3]
    assert box.label == row["new_class"] and box.label in aset.class_names
    # the crop was cut with a margin of CROP_MARGIN px: the box sits that far in (unless clipped)
    x1, y1 = float(row["x1"]), float(row["y1"])
    assert box.x1 == pytest.approx(x1 - int(max(0, x1 - CROP_MARGIN)))
    assert box.y1 == pytest.approx(y1 - int(max(0, y1 - CROP_MARGIN)))
    assert box.width == pytest.approx(float(row["x2"]) - x1) and box.height == pytest.approx(
        float(row["y2"]) - y1
    )
    assert aset.problems == []


def test_export_reads_back_with_the_vott_reader(reviewed: pd.DataFrame, tmp_path: Path) -> None:
    aset = reviewed_set(reviewed, _resolve, class_names=("crazing",), source="db")
    path = write_export(aset, tmp_path / "export")
    assert path.name == "steel-reviews-export.json"
    back = read_dataset(path)
    assert [im.name for im in back.images] == [im.name for im in aset.images]
    assert [v for im in back.images for b in im.boxes for v in b.xyxy] == pytest.approx(
        [v for im in aset.images for b in im.boxes for v in b.xyxy]
    )
    assert [b.label for im in back.images for b in im.boxes] == [
        b.label for im in aset.images for b in im.boxes
    ]
    for im in aset.images:  # images copied beside the export, byte for byte
        assert (path.parent / im.name).read_bytes() == im.path.read_bytes()
    data = json.loads(path.read_text())
    assert {a["asset"]["state"] for a in data["assets"].values()} == {1, 2}  # backgrounds are "visited"


def test_crop_pixels_under_the_box_are_the_frame_pixels(
    reviewed: pd.DataFrame, neu_images: list[Path]
) -> None:
    """The box in the crop covers the same steel as the box in the frame image the crop came from."""
    aset = reviewed_set(reviewed, _resolve, class_names=(), source="db")
    im = next(i for i in aset.images if i.boxes)
    (box,) = im.boxes
    crop = np.asarray(Image.open(im.path).convert("L"))
    row = reviewed[reviewed["defect_id"] == int(im.name.split("-")[1].split(".")[0])].iloc[0]
    frame_seq = int(row["frame_seq"])
    source_line = row["frame_source"].split(":")[1]
    k_image = frame_seq if source_line == "L1" else 92 + frame_seq  # the seed walks images in frame order
    frame = np.asarray(Image.open(neu_images[k_image % len(neu_images)]).convert("L"))
    cx, cy = int(box.x1), int(box.y1)
    fx, fy = int(float(row["x1"])), int(float(row["y1"]))
    w, h = int(box.width), int(box.height)
    np.testing.assert_array_equal(crop[cy : cy + h, cx : cx + w], frame[fy : fy + h, fx : fx + w])


def test_defects_without_images_are_reported_not_exported(reviewed: pd.DataFrame) -> None:
    rows = reviewed.copy()
    rows.loc[0, "crop_path"] = "/nowhere/crop.png"
    aset = reviewed_set(rows, _resolve, class_names=(), source="db")
    assert len(aset.images) == len(rows) - 1
    (problem,) = aset.problems
    assert (
        problem.item == f"defect {rows.loc[0, 'defect_id']}" and "no crop or frame image" in problem.message
    )


def test_zip_holds_the_json_and_every_image(reviewed: pd.DataFrame) -> None:
    aset = reviewed_set(reviewed, _resolve, class_names=(), source="db")
    with zipfile.ZipFile(io.BytesIO(export_zip(aset))) as zf:
        names = sorted(zf.namelist())
    assert names == sorted(
        ["steel-reviews/steel-reviews-export.json", *(f"steel-reviews/{im.name}" for im in aset.images)]
    )


def test_vott_tags_have_the_colours_the_pages_give_each_class(reviewed: pd.DataFrame) -> None:
    # the Review page exports with the database's classes in sorted order, which is NEU-DET's order
    aset = reviewed_set(reviewed, _resolve, class_names=tuple(sorted(NEU_DET_CLASSES)), source="db")
    with zipfile.ZipFile(io.BytesIO(export_zip(aset))) as zf:
        project = json.loads(zf.read("steel-reviews/steel-reviews-export.json"))
    tags = {t["name"]: t["color"] for t in project["tags"]}
    assert set(tags) >= set(NEU_DET_CLASSES)
    assert {name: tags[name] for name in NEU_DET_CLASSES} == {
        name: class_colour(name) for name in NEU_DET_CLASSES
    }
    assert len(set(tags.values())) == len(tags)  # every class told apart
