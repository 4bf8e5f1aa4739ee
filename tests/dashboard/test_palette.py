"""One palette (issue 16 item 16): the daemon's annotated frames and the dashboard's crops draw each class
in the same colour, whatever order the model lists its classes in."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dashboard.colors import class_colour, class_rgb
from dashboard.images import annotated_crop, load_rgb
from datasets.model import NEU_DET_CLASSES, AnnotatedSet
from datasets.writers.vott_json import vott_export_dict
from inspection.stages.evidence import draw_boxes

# the model's own class order (not NEU-DET's) and a class outside NEU-DET: colours follow names, not ids
LABELS = [*reversed(NEU_DET_CLASSES), "anomaly"]
BOX = (40, 50, 160, 170)


def _daemon_colour(image: np.ndarray, class_id: int) -> tuple[int, int, int]:
    """The RGB the daemon draws class ``class_id``'s box edge in (its annotated frame, BGR on disk)."""
    boxes = np.array([BOX], dtype=np.float32)
    drawn = draw_boxes(image, boxes, np.array([class_id]), LABELS)
    b, g, r = drawn[110, BOX[0]]  # the left edge, half-way down
    return int(r), int(g), int(b)


def _dashboard_colour(image: Image.Image, name: str) -> tuple[int, int, int]:
    """The RGB the dashboard draws a defect of class ``name`` in (its gallery crop of the whole frame)."""
    crop = annotated_crop(image, BOX, (image.width, image.height), rgb=class_rgb(name))
    r, g, b = crop.getpixel((BOX[0], 110))
    return r, g, b


def test_the_daemon_and_the_dashboard_draw_every_class_in_the_same_colour(neu_images: list[Path]) -> None:
    gray = cv2.imread(str(neu_images[0]), cv2.IMREAD_GRAYSCALE)
    page_image = load_rgb(neu_images[0])
    assert gray is not None and page_image is not None
    for class_id, name in enumerate(LABELS):
        daemon = _daemon_colour(gray, class_id)
        assert daemon == _dashboard_colour(page_image, name), name
        assert "#{:02x}{:02x}{:02x}".format(*daemon) == class_colour(name)  # the charts' colour too
    assert len({_daemon_colour(gray, k) for k in range(len(LABELS))}) == len(LABELS)  # told apart


def test_the_vott_export_tags_each_class_in_its_dashboard_colour_whatever_the_class_order() -> None:
    """The review export lists its classes sorted (``anomaly`` first): before the fix tags were coloured
    by position, so every NEU tag took its neighbour's colour in VoTT."""
    aset = AnnotatedSet(images=[], class_names=tuple(sorted(LABELS)))
    tags = vott_export_dict(aset, project_name="reviews")["tags"]
    assert {t["name"]: t["color"] for t in tags} == {name: class_colour(name) for name in LABELS}
