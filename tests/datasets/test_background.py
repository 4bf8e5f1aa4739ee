"""Clean tiles cut from real NEU-DET images: never near a box, never up-scaled, reported per class."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets.background import (
    BackgroundRule,
    CleanTile,
    find_clean_windows,
    read_background,
    read_gray_image,
    select_clean_tiles,
    source_class,
    tile_canvas,
    write_tiles,
)
from datasets.cli import app
from datasets.readers import read_dataset


@pytest.fixture(scope="module")
def neu_sample(neu_root):
    """Every tenth NEU-DET image, all six classes."""
    aset = read_dataset(neu_root / "annotations")
    return aset.subset([im.name for im in aset.images[::10]])


def _gap_to_box(tile: tuple[int, int, int, int], box: tuple[float, float, float, float]) -> float:
    """Chebyshev gap between a tile and a box (0 when they touch or overlap)."""
    dx = max(box[0] - tile[2], tile[0] - box[2], 0.0)
    dy = max(box[1] - tile[3], tile[1] - box[3], 0.0)
    return max(dx, dy)


@pytest.mark.parametrize("margin", [0, 12, 20])
def test_no_tile_comes_within_the_margin_of_any_box(neu_sample, margin):
    rule = BackgroundRule(margin_px=margin, exclude_classes=())
    result = select_clean_tiles(neu_sample, rule)
    assert len(result.tiles) > 20
    by_name = neu_sample.by_name()
    for tile in result.tiles:
        for box in by_name[tile.source].boxes:
            assert _gap_to_box(tile.xyxy, box.xyxy) >= margin, (tile, box)


def test_tiles_are_whole_squares_of_the_stated_sizes_inside_their_image(neu_sample):
    rule = BackgroundRule(tile_sizes_px=(96, 64), min_tile_px=64)
    result = select_clean_tiles(neu_sample, rule)
    by_name = neu_sample.by_name()
    for tile in result.tiles:
        x1, y1, x2, y2 = tile.xyxy
        assert x2 - x1 == y2 - y1 and x2 - x1 in (96, 64)
        image = by_name[tile.source]
        assert 0 <= x1 and 0 <= y1 and x2 <= image.width and y2 <= image.height
    assert set(result.sizes()) <= {"96", "64"}


def test_tiles_of_one_image_never_overlap(neu_sample):
    rule = BackgroundRule(max_tiles_per_image=8, exclude_classes=())
    for image in neu_sample.images:
        windows = find_clean_windows(image, rule)
        for i, a in enumerate(windows):
            for b in windows[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_excluded_classes_and_covered_images_give_no_tiles(neu_sample):
    result = select_clean_tiles(neu_sample, BackgroundRule(max_box_cover=0.3))
    assert not {"crazing", "pitted_surface"} & {t.source_class for t in result.tiles}
    assert result.skipped_class["crazing"] == sum(im.name.startswith("crazing") for im in neu_sample.images)
    assert sum(result.skipped_covered.values()) > 0


def test_a_crop_keeps_its_pixels_and_scale_on_the_mirrored_canvas(neu_sample):
    image = read_gray_image(neu_sample.images[-1].path)
    crop = image[10:74, 20:84]
    canvas = tile_canvas(crop, 200)
    assert canvas.shape == (200, 200)
    off = (200 - 64) // 2
    assert np.array_equal(canvas[off : off + 64, off : off + 64], crop)
    assert np.array_equal(canvas[off - 1, off : off + 64], crop[0])  # mirrored, not stretched


def test_written_tiles_are_the_source_pixels_and_read_back(neu_sample, tmp_path):
    result = select_clean_tiles(neu_sample, BackgroundRule())
    write_tiles(result, neu_sample, tmp_path)
    summary, tiles = read_background(tmp_path)
    assert summary["tiles"] == len(tiles) == len(result.tiles)
    first: CleanTile = tiles[0]
    source = read_gray_image(neu_sample.by_name()[first.source].path)
    x1, y1, x2, y2 = first.xyxy
    assert np.array_equal(read_gray_image(tmp_path / "crops" / first.file), source[y1:y2, x1:x2])
    assert read_gray_image(tmp_path / "canvas" / first.file).shape == (200, 200)


def test_reading_a_folder_without_tiles_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="background.json"):
        read_background(tmp_path)


def test_steel_data_background_reports_tiles_per_class_and_size(neu_root, tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "background",
            str(neu_root / "annotations"),
            "--out",
            str(tmp_path),
            "--json",
            "--contact-sheet",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["tiles"] == sum(summary["per_class"].values()) == sum(summary["sizes_px"].values())
    dominant = Counter(source_class(im) for im in read_dataset(neu_root / "annotations").images)
    assert summary["skipped_class"] == {
        "crazing": dominant["crazing"],
        "pitted_surface": dominant["pitted_surface"],
    }
    assert len(summary["on_contact_sheets"]) == 2 * len(summary["per_class"])
    assert (tmp_path / "report.md").read_text().count("|") > 20
    assert (tmp_path / "sheet_scratches.png").is_file()


def test_steel_data_background_with_exclude_class_none_takes_tiles_from_every_class(neu_root, tmp_path):
    args = ["background", str(neu_root / "annotations"), "--out", str(tmp_path), "--json"]
    res = CliRunner().invoke(app, [*args, "--contact-sheet", "0", "--exclude-class", "none"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert not summary["skipped_class"]
    assert {"crazing", "pitted_surface"} <= set(summary["per_class"])
