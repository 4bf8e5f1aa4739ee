"""The sink's evidence files on their own: annotated copies, atomic writes that leave nothing behind on
failure, and raw pixels back at the source frame's size. Real NEU-DET pixels, a real file system."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.palette import class_bgr
from inspection.stages.evidence import draw_boxes, raw_pixels, write_image_atomic
from tests.inspection.stages.conftest import neu_frame, neu_image


def test_an_image_written_atomically_reads_back_the_same_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "frame.png"
    write_image_atomic(target, neu_image(3))
    written = cv2.imread(str(target), cv2.IMREAD_GRAYSCALE)
    assert written is not None and np.array_equal(written, neu_image(3))
    assert [p.name for p in target.parent.iterdir()] == ["frame.png"]


def test_an_image_that_cannot_be_written_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "frame.notanimage"  # OpenCV has no writer for this extension
    with pytest.raises(OSError, match=r"cannot write .*frame\.notanimage \(\d+ bytes free\)"):
        write_image_atomic(target, neu_image(3))
    assert list(tmp_path.iterdir()) == []


def test_boxes_are_drawn_in_their_class_colour_on_a_colour_copy() -> None:
    image = neu_image(0)
    boxes = np.array([[20, 30, 80, 90]], np.float32)
    canvas = draw_boxes(image, boxes, np.array([2]), ["crazing", "inclusion", "patches"])
    assert canvas.shape == (200, 200, 3) and np.array_equal(image, neu_image(0))  # input untouched
    assert tuple(canvas[60, 20]) == class_bgr("patches")  # the left side of the box, in patches' colour
    assert tuple(canvas[150, 150]) == (image[150, 150],) * 3  # outside: the frame's own grey


def test_raw_pixels_are_resized_back_to_the_source_frame_when_preprocessing_resized_it() -> None:
    frame = neu_frame(1)
    assert raw_pixels(frame) is frame.image
    small = frame.with_image(cv2.resize(frame.image, (100, 50)), preprocess_scale_xy=(2.0, 4.0))
    assert raw_pixels(small).shape == (200, 200)
