"""Defect images as the pages show them: boxes drawn on real NEU-DET crops, unreadable files tolerated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dashboard.images import BOX_RGB, annotated_crop, draw_box, load_rgb


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
