"""Defect images as the pages show them: boxes drawn on real NEU-DET crops, unreadable files tolerated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dashboard.images import BOX_RGB, Resolver, annotated_crop, defect_picture, draw_box, load_rgb


def _red(im: Image.Image) -> np.ndarray:
    a = np.asarray(im.convert("RGB")).astype(int)
    return np.abs(a - np.array(BOX_RGB)).sum(axis=2) < 30


def test_draw_box_outlines_the_box_only(neu_images: list[Path]) -> None:
    im = load_rgb(neu_images[0])
    assert im is not None and im.size == (200, 200)
    out = draw_box(im, (50, 60, 120, 150))
    red = _red(out)
    assert red[60, 50:120].all() and red[60:150, 50].all()  # top and left edges
    assert red[149, 50:120].all() and red[60:150, 119].all()  # x2/y2 exclusive: last pixel row/column
    assert not red[100, 60:110].any() and not red[:55].any()  # inside and outside untouched
    assert out is not im and not _red(im).any()  # a copy


def test_annotated_crop_scales_into_a_square(neu_images: list[Path]) -> None:
    crop = load_rgb(neu_images[1]).crop((2, 12, 58, 88))  # box (10, 20, 50, 80) of the frame, margin 8
    thumb = annotated_crop(crop, (10, 20, 50, 80), (200, 200), size=240)
    assert thumb.size == (240, 240)
    scale = 240 / 76  # the crop is 56 x 76: its height fills the square
    ox = (240 - round(56 * scale)) // 2
    red = _red(thumb)
    assert red[round(8 * scale), ox + round(20 * scale)]  # top edge of the box, scaled and centred
    assert not red[120, ox + round(20 * scale) : ox + round(30 * scale)].any()
    assert tuple(np.asarray(thumb)[120, 2]) == (245, 245, 245)  # padding
    unboxed = annotated_crop(crop, (10, 20, 150, 180), (200, 200))  # the crop is not this box's
    assert unboxed.size == crop.size and not _red(unboxed).any()


def test_missing_and_corrupt_images_give_none(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert load_rgb(bad) is None
    assert load_rgb(tmp_path / "missing.png") is None
    assert load_rgb(None) is None


def _on_disk(files: dict[str, Path]) -> Resolver:
    """A resolver over a fixed set of stored paths (the pages use ``media_path``)."""
    return lambda stored: files.get(stored or "")


def _row(**over: object) -> dict:
    row = {"x1": 40.0, "y1": 50.0, "x2": 90.0, "y2": 120.0, "class_name": "scratches"}
    row.update({"frame_width": 200, "frame_height": 200, "crop_path": None, "frame_image_path": None})
    row.update(over)
    return row


def test_a_missing_crop_is_cut_from_the_frame_image_with_the_daemons_window(
    neu_images: list[Path], tmp_path: Path
) -> None:
    """The picture a page shows when the crop file is gone is the crop the daemon would have written."""
    frame = tmp_path / "frame.png"
    Image.open(neu_images[2]).convert("RGB").save(frame)
    files = {"frames/1.png": frame}
    row = _row(crop_path="crops/1_t1.jpg", frame_image_path="frames/1.png")  # the crop was deleted
    picture = defect_picture(row, _on_disk(files))
    assert picture is not None and picture.size == (50 + 16, 70 + 16)  # box plus the 8 px margin each side
    expected = Image.open(neu_images[2]).convert("RGB").crop((32, 42, 98, 128))
    inside = np.asarray(picture)[20:60, 20:40]  # well inside the drawn box: the frame's own pixels
    np.testing.assert_array_equal(inside, np.asarray(expected)[20:60, 20:40])
    assert _red(picture).sum() == 0  # drawn in the class colour, not the default red
    assert not np.array_equal(np.asarray(picture)[8, 8:58], np.asarray(expected)[8, 8:58])  # box's top edge


def test_a_frame_image_kept_at_another_scale_is_cut_where_the_box_lies(
    neu_images: list[Path], tmp_path: Path
) -> None:
    small = tmp_path / "frame.png"
    Image.open(neu_images[2]).convert("RGB").resize((100, 100)).save(small)
    picture = defect_picture(_row(frame_image_path="f.png"), _on_disk({"f.png": small}))
    assert picture is not None and picture.size == (25 + 16, 35 + 16)  # box halved, the margin not


def test_a_kept_crop_wins_and_no_image_at_all_gives_none(neu_images: list[Path]) -> None:
    crop = load_rgb(neu_images[1])
    assert crop is not None
    row = _row(crop_path="c.png", frame_image_path="f.png")
    picture = defect_picture(row, _on_disk({"c.png": neu_images[1], "f.png": neu_images[2]}))
    assert picture is not None and picture.size == crop.size  # the crop file, not a cut from the frame
    assert defect_picture(row, _on_disk({})) is None
    outside = _row(x1=300.0, x2=320.0, frame_image_path="f.png")  # a box beyond the frame image
    assert defect_picture(outside, _on_disk({"f.png": neu_images[2]})) is None
