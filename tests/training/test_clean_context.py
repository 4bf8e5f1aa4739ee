"""Strays on clean steel in context: only detections centred on a real frame's clean region count."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.detections import Detections
from datasets.readers import read_dataset
from training.background import strays_per_100
from training.clean_context import clean_context_strays

# scratches_71.jpg is 200 x 200 with one scratch at x 83..98, y 3..199; with a 12 px margin the
# forbidden band is x 71..110 over the whole height: 200 * (200 - 39) clean pixels.
CLEAN_PX = 200 * (200 - 39)
THRESHOLDS = np.array([0.3, 0.3, 0.3, 0.3, 0.3, 0.5], dtype=np.float32)  # scratches (id 5) needs 0.5


@pytest.fixture(scope="module")
def scratches_71(neu_root):
    aset = read_dataset(neu_root / "annotations")
    return next(im for im in aset.images if im.name == "scratches_71.jpg")


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    a = np.array(rows, dtype=np.float32).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def test_a_box_on_clean_steel_counts_and_boxes_on_or_beside_the_defect_do_not(scratches_71):
    found = clean_context_strays(
        [scratches_71],
        [
            dets(
                (85, 50, 96, 150, 0.9, 5),  # the annotated scratch itself
                (100, 40, 110, 60, 0.9, 1),  # centre x 105: inside the 12 px margin
                (150, 20, 190, 60, 0.9, 1),  # clean steel, above its class threshold
                (10, 10, 40, 40, 0.4, 5),  # clean steel, below the scratch threshold
                (180, 180, 230, 230, 0.9, 1),  # centre past the frame: clipped onto clean steel
            )
        ],
        THRESHOLDS,
    )
    assert found.strays == {"scratches": 2}
    assert found.tile_areas["scratches"] == pytest.approx(CLEAN_PX / 40000)
    assert found.per_100() == pytest.approx(100 * 2 / (CLEAN_PX / 40000))


def test_a_frame_with_no_detection_adds_clean_area_but_no_stray(scratches_71):
    found = clean_context_strays([scratches_71, scratches_71], [dets(), dets()], THRESHOLDS, tile_px=100)
    assert sum(found.strays.values()) == 0
    assert found.tile_areas["scratches"] == pytest.approx(2 * CLEAN_PX / 10000)
    assert found.per_100("scratches") == 0.0
    assert np.isnan(found.per_100("patches"))


def test_records_and_detections_of_different_lengths_are_refused(scratches_71):
    with pytest.raises(ValueError, match="1 records but 2 detection sets"):
        clean_context_strays([scratches_71], [dets(), dets()], THRESHOLDS)


def test_strays_per_tile_take_one_threshold_or_one_per_class():
    tiles = [dets((0, 0, 10, 10, 0.45, 5), (20, 20, 30, 30, 0.35, 1)), dets()]
    assert strays_per_100(tiles, 0.3) == 100.0  # two strays on two tiles
    assert strays_per_100(tiles, 0.4) == 50.0
    assert strays_per_100(tiles, THRESHOLDS) == 50.0  # the scratch (0.45) is below its 0.5
    assert strays_per_100([], THRESHOLDS) == 0.0
