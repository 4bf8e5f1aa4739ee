"""Tracking the same defect across overlapping line-scan frames: known answers on a small strip.

The strip is three NEU-DET images stacked along it (600 lines x 200 px); frame A holds lines 0-400 and
frame B lines 200-600, so lines 200-400 are seen twice. A "defect" is painted where a test needs one: a
brightness ramp across the web, constant along the strip, like a longitudinal scratch, so a crop of it
has the same dHash whatever its length (and the mirrored ramp the opposite hash).
"""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from datasets.detections import Detections
from datasets.dhash import dhash_array, hamming
from datasets.settings import data_root
from inspection.messages import Frame
from inspection.tracking import Tracker, crop_hash, iou_one_to_many

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def strip_image() -> np.ndarray:
    paths = sorted((data_root() / "images").glob("scratches_*.jpg"))[:3]
    return np.vstack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths])  # (600, 200)


def paint_ramp(strip: np.ndarray, xyxy: tuple[int, int, int, int], *, mirrored: bool = False) -> np.ndarray:
    x1, y1, x2, y2 = xyxy
    ramp = np.linspace(40, 220, x2 - x1).astype(np.uint8)
    out = strip.copy()
    out[y1:y2, x1:x2] = ramp[::-1] if mirrored else ramp
    return out


def frame(strip: np.ndarray, start_line: int, seq: int | None = None, lines: int = 400) -> Frame:
    seq = start_line if seq is None else seq
    return Frame("sim", seq, strip[start_line : start_line + lines].copy(), T0, start_line=start_line)


def dets(
    *boxes: tuple[float, float, float, float], classes: list[int] | None = None, scores=None
) -> Detections:
    n = len(boxes)
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores if scores is not None else [0.9] * n, np.float32),
        np.array(classes if classes is not None else [5] * n, np.int64),
    )


def tracker(**options) -> Tracker:
    return Tracker(class_names=CLASSES, **options)


@pytest.mark.parametrize(
    ("box", "boxes", "expected"),
    [
        ((0, 0, 10, 10), [(0, 0, 10, 10)], [1.0]),
        ((0, 0, 10, 10), [(5, 0, 15, 10), (10, 0, 20, 10), (0, 0, 20, 20)], [50 / 150, 0.0, 0.25]),
        ((0, 0, 0, 10), [(0, 0, 10, 10)], [0.0]),  # a box without area overlaps nothing
    ],
)
def test_iou_one_to_many(box, boxes, expected) -> None:
    got = iou_one_to_many(np.array(box, float), np.array(boxes, float))
    np.testing.assert_allclose(got, expected)


def test_the_same_defect_in_the_overlap_is_new_once_then_seen_again() -> None:
    strip = strip_image()
    t = tracker()
    # frame A: lines 0-400; the defect at strip lines 250-330 is at A's rows 250-330 and B's rows 50-130
    new_a, again_a = t.update(frame(strip, 0), dets((30, 250, 90, 330)))
    assert again_a == [] and len(new_a) == 1
    d = new_a[0]
    assert (d.class_name, d.track_id, d.first_frame_seq) == ("scratches", "0-0", 0)
    assert d.xyxy == (30, 250, 90, 330) and d.strip_xyxy == (30, 250, 90, 330)
    assert d.dhash == dhash_array(strip[250:330, 30:90])
    new_b, again_b = t.update(frame(strip, 200), dets((31, 52, 90, 131)))  # a pixel off: IoU 0.96
    assert new_b == [] and again_b == ["0-0"]


def test_another_class_at_the_same_place_is_another_defect() -> None:
    strip = strip_image()
    t = tracker()
    t.update(frame(strip, 0), dets((30, 250, 90, 330), classes=[5]))
    new_b, again_b = t.update(frame(strip, 200), dets((30, 50, 90, 130), classes=[1]))
    assert again_b == [] and [(d.class_name, d.strip_xyxy) for d in new_b] == [
        ("inclusion", (30, 250, 90, 330))
    ]
    assert new_b[0].track_id == "200-0"


def test_a_box_cut_by_the_frame_border_matches_by_dhash() -> None:
    """A sees only the part of the defect above its last line; B sees it whole: IoU 0.3, same look."""
    strip = paint_ramp(strip_image(), (20, 330, 120, 430))
    t = tracker()
    t.update(frame(strip, 0), dets((20, 370, 120, 400)))  # strip lines 370-400 of a 330-430 defect
    assert (
        hamming(
            crop_hash(strip, np.array([20, 370, 120, 400.0])),
            crop_hash(strip, np.array([20, 330, 120, 430.0])),
        )
        == 0
    )
    new_b, again_b = t.update(frame(strip, 200), dets((20, 130, 120, 230)))  # strip 330-430: IoU 0.3
    assert new_b == [] and again_b == ["0-0"]


def test_a_moderate_overlap_that_looks_different_is_a_new_defect() -> None:
    strip = paint_ramp(strip_image(), (20, 330, 120, 400))
    strip = paint_ramp(strip, (20, 400, 120, 440), mirrored=True)  # B's box is mostly the mirrored ramp
    t = tracker()
    t.update(frame(strip, 0), dets((20, 370, 120, 400)))
    a_hash = crop_hash(strip, np.array([20, 370, 120, 400.0]))
    assert hamming(a_hash, crop_hash(strip, np.array([20, 380, 120, 440.0]))) > 10
    new_b, again_b = t.update(frame(strip, 200), dets((20, 180, 120, 240)))  # strip 380-440: IoU 0.29
    assert again_b == [] and [d.strip_xyxy for d in new_b] == [(20, 380, 120, 440)]


@pytest.mark.parametrize(
    ("a_box", "b_box_strip", "matched"),
    [
        ((20, 300, 120, 400), (20, 300, 120, 400), True),  # IoU 1
        ((20, 300, 120, 400), (20, 340, 120, 440), True),  # IoU 0.43 < 0.5 but same look (>= 0.2)
        ((20, 380, 120, 400), (20, 390, 120, 480), False),  # IoU 0.1: too far apart even if alike
        ((20, 300, 60, 400), (70, 300, 120, 400), False),  # side by side: IoU 0
    ],
)
def test_match_thresholds(a_box, b_box_strip, matched) -> None:
    strip = paint_ramp(strip_image(), (20, 300, 120, 480))
    t = tracker(iou_threshold=0.5, hash_iou_threshold=0.2, max_hamming=10)
    t.update(frame(strip, 0), dets(a_box))
    bx1, by1, bx2, by2 = b_box_strip
    new_b, again_b = t.update(frame(strip, 200), dets((bx1, by1 - 200, bx2, by2 - 200)))
    assert (again_b == ["0-0"], len(new_b) == 0) == (matched, matched)


def test_one_track_takes_one_detection_per_frame() -> None:
    """Two boxes of one class on one track: the better-scored one is the re-sighting, the other is new."""
    strip = strip_image()
    t = tracker()
    t.update(frame(strip, 0), dets((30, 250, 90, 330)))
    new_b, again_b = t.update(
        frame(strip, 200), dets((30, 52, 90, 130), (30, 50, 90, 131), scores=[0.4, 0.8])
    )
    assert again_b == ["0-0"]
    assert [(d.score, d.xyxy) for d in new_b] == [(pytest.approx(0.4), (30, 52, 90, 130))]
    assert new_b[0].track_id == "200-1"  # second in (score, y, x) order


def test_a_re_sighting_keeps_its_track_when_a_better_scored_neighbour_also_fits_it() -> None:
    """Greedy in score order, the neighbour (moderate IoU, same look) took the small defect's track and
    the small defect itself (IoU 1) was stored a second time; the frame is matched as a whole now."""
    strip = paint_ramp(strip_image(), (20, 300, 180, 400))
    big, small, neighbour = (20, 200, 180, 400), (20, 305, 60, 400), (20, 300, 130, 400)  # strip pixels
    assert hamming(crop_hash(strip, np.array(big, float)), crop_hash(strip, np.array(neighbour, float))) > 10
    assert crop_hash(strip, np.array(small, float)) == crop_hash(strip, np.array(neighbour, float))
    t = tracker()
    t.update(frame(strip, 0), dets(big, small, scores=[0.9, 0.3]))
    in_b = [(x1, y1 - 200, x2, y2 - 200) for x1, y1, x2, y2 in (neighbour, small)]
    new_b, again_b = t.update(frame(strip, 200), dets(*in_b, scores=[0.8, 0.2]))
    assert again_b == ["0-1"]  # the small defect's own track
    assert [d.strip_xyxy for d in new_b] == [neighbour]  # the neighbour is the new one, stored once


def test_finished_tracks_are_dropped() -> None:
    strip = strip_image()
    t = tracker()
    t.update(frame(strip, 0), dets((30, 250, 90, 330), (30, 10, 90, 60)))
    assert len(t.tracks) == 2
    t.update(frame(strip, 200), dets())  # the track ending at line 60 lies before this frame
    assert [tr.track_id for tr in t.tracks] == ["0-1"]  # ids follow (score, y, x) order
    t.update(frame(strip, 400, lines=200), dets())
    assert t.tracks == []


def test_sources_without_encoder_positions_never_match() -> None:
    strip = strip_image()
    t = tracker()
    image = strip[:200].copy()
    first = Frame("folder", 1, image, T0)
    second = Frame("folder", 2, image, T0)
    new_1, _ = t.update(first, dets((30, 50, 90, 130)))
    new_2, again_2 = t.update(second, dets((30, 50, 90, 130)))
    assert [d.strip_xyxy for d in new_1 + new_2] == [None, None]
    assert again_2 == [] and t.tracks == []


def test_a_frame_without_detections() -> None:
    t = tracker()
    assert t.update(frame(strip_image(), 0), Detections.empty()) == ([], [])
