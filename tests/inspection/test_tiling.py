"""Tiling: offsets against tables, tile cutting on real NEU-DET pixels, and merging tile detections.

The merge tests use a fake per-tile detector that "predicts" the ground truth clipped to each tile,
which is exactly what a perfect detector sees when a defect is cut by a tile border.
"""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.detections import Detections
from inspection.messages import Frame, TileBatch
from inspection.tiling import (
    box_iou,
    cut_tiles,
    merge_tile_detections,
    tile_grid,
    tile_offsets,
)

TILE = (200, 200)


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "expected"),
    [
        (600, 200, 0, [0, 200, 400]),
        (600, 200, 40, [0, 160, 320, 400]),
        (800, 200, 40, [0, 160, 320, 480, 600]),
        (360, 200, 40, [0, 160]),  # exact fit: no duplicate last tile
        (201, 200, 0, [0, 1]),  # one pixel over: the last tile snaps to the edge
        (201, 200, 40, [0, 1]),
        (200, 200, 40, [0]),
        (150, 200, 40, [0]),  # smaller than a tile: one (padded) tile
        (1, 1, 0, [0]),
        (5, 2, 1, [0, 1, 2, 3]),
    ],
)
def test_tile_offsets_table(length: int, tile: int, overlap: int, expected: list[int]) -> None:
    assert tile_offsets(length, tile, overlap) == expected


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(0, 200, 0), (100, 0, 0), (100, 10, 10), (100, 10, -1)]
)
def test_tile_offsets_rejects_bad_arguments(length: int, tile: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        tile_offsets(length, tile, overlap)


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 5000), tile=st.integers(1, 400), data=st.data())
def test_tile_offsets_cover_every_pixel_with_whole_tiles(length: int, tile: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, tile - 1))
    offsets = tile_offsets(length, tile, overlap)
    assert offsets[0] == 0 and offsets == sorted(set(offsets))
    if length >= tile:
        assert offsets[-1] == length - tile  # snapped to the edge, never past it
    steps = np.diff(offsets)
    assert np.all(steps <= tile - overlap)  # neighbours overlap by at least `overlap`
    covered = np.zeros(length, bool)
    for o in offsets:
        covered[o : o + tile] = True
    assert covered.all()


def test_tile_grid_is_row_major_and_covers_the_frame() -> None:
    grid = tile_grid((600, 800), TILE, (40, 40))
    assert len(grid) == 4 * 5
    assert grid[:6] == [(0, 0), (160, 0), (320, 0), (480, 0), (600, 0), (0, 160)]
    assert grid[-1] == (600, 400)


def test_cut_tiles_are_copies_of_the_frame_regions(neu_root) -> None:
    image = cv2.imread(str(neu_root / "images" / "scratches_2.jpg"), cv2.IMREAD_GRAYSCALE)
    frame = np.vstack([np.hstack([image, image[:, ::-1]]), np.hstack([image[::-1], image])])  # 400x400
    before = frame.copy()
    grid = tile_grid(frame.shape, (128, 128), (16, 16))
    tiles = cut_tiles(frame, grid, (128, 128))
    assert tiles.shape == (len(grid), 128, 128) and tiles.dtype == np.uint8
    for tile, (x, y) in zip(tiles, grid, strict=True):
        np.testing.assert_array_equal(tile, frame[y : y + 128, x : x + 128])
    tiles[:] = 0
    np.testing.assert_array_equal(frame, before)  # tiles do not alias the frame


@pytest.mark.parametrize("mode", ["reflect", "edge", "constant"])
def test_cut_tiles_pads_a_frame_smaller_than_a_tile(neu_root, mode: str) -> None:
    image = cv2.imread(str(neu_root / "images" / "inclusion_2.jpg"), cv2.IMREAD_COLOR)[:150, :120]
    grid = tile_grid(image.shape[:2], TILE, (40, 40))
    assert grid == [(0, 0)]
    (tile,) = cut_tiles(image, grid, TILE, pad_mode=mode)
    assert tile.shape == (200, 200, 3)
    np.testing.assert_array_equal(tile[:150, :120], image)
    np.testing.assert_array_equal(
        tile[:150, 120:], np.pad(image, ((0, 0), (0, 80), (0, 0)), mode=mode)[:, 120:]
    )


def test_cut_tiles_rejects_a_tile_outside_the_frame() -> None:
    with pytest.raises(ValueError, match="leaves"):
        cut_tiles(np.zeros((300, 300), np.uint8), [(150, 0)], TILE)


# --- merging -------------------------------------------------------------------------------------


def fake_detector(
    truth: list[tuple[tuple[float, float, float, float], int]],
    grid: list[tuple[int, int]],
    tile_hw: tuple[int, int] = TILE,
    score: float = 0.9,
) -> list[Detections]:
    """Per tile: every ground-truth box clipped to the tile, in tile pixels (a perfect detector)."""
    th, tw = tile_hw
    out = []
    for x, y in grid:
        boxes, classes = [], []
        for (x1, y1, x2, y2), cls in truth:
            cx1, cy1, cx2, cy2 = max(x1, x), max(y1, y), min(x2, x + tw), min(y2, y + th)
            if cx2 > cx1 and cy2 > cy1:
                boxes.append((cx1 - x, cy1 - y, cx2 - x, cy2 - y))
                classes.append(cls)
        out.append(
            Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), score), classes)
        )
    return out


def assert_same_boxes(merged: Detections, truth: list[tuple[tuple[float, float, float, float], int]]) -> None:
    assert len(merged) == len(truth), (merged.xyxy, truth)
    if not truth:
        return
    expected = np.array([b for b, _ in truth], np.float32).reshape(-1, 4)
    iou = box_iou(merged.xyxy.astype(np.float64), expected.astype(np.float64))
    match = iou.argmax(axis=1)
    assert sorted(match.tolist()) == list(range(len(truth)))  # one merged box per true box
    np.testing.assert_allclose(merged.xyxy, expected[match], atol=1.0)
    assert merged.class_ids.tolist() == [truth[m][1] for m in match]


def test_merging_nothing_gives_nothing() -> None:
    grid = tile_grid((600, 800), TILE, (40, 40))
    assert len(merge_tile_detections([Detections.empty()] * len(grid), grid, TILE)) == 0
    assert len(merge_tile_detections([], [], TILE)) == 0
    with pytest.raises(ValueError):
        merge_tile_detections([Detections.empty()], grid, TILE)


@pytest.mark.parametrize("method", ["nms", "wbf"])
@pytest.mark.parametrize(
    "box",
    [
        (150.0, 50.0, 260.0, 120.0),  # cut by one vertical border, IoU of the halves < 0.5
        (30.0, 10.0, 560.0, 60.0),  # a long scratch over four tiles
        (140.0, 130.0, 230.0, 250.0),  # at the corner of four tiles
        (10.0, 100.0, 60.0, 590.0),  # along the strip over all rows of tiles
        (150.0, 50.0, 200.0, 120.0),  # ends exactly on a tile border
    ],
)
def test_a_box_cut_by_tile_borders_merges_back_to_one(box: tuple[float, ...], method: str) -> None:
    grid = tile_grid((600, 800), TILE, (40, 40))
    truth = [(box, 2)]
    per_tile = fake_detector(truth, grid)
    assert sum(len(d) for d in per_tile) >= 2  # really cut
    assert_same_boxes(merge_tile_detections(per_tile, grid, TILE, method=method), truth)


def test_tiles_without_overlap_still_join_halves_that_touch() -> None:
    grid = tile_grid((400, 400), TILE, (0, 0))
    truth = [((120.0, 30.0, 290.0, 80.0), 0)]
    assert_same_boxes(merge_tile_detections(fake_detector(truth, grid), grid, TILE), truth)


def test_two_distinct_nearby_defects_of_one_class_stay_apart() -> None:
    grid = tile_grid((200, 360), TILE, (40, 40))  # tiles at x=0 and x=160
    truth = [((120.0, 50.0, 195.0, 90.0), 1), ((198.0, 50.0, 260.0, 90.0), 1)]  # 3 px apart, across x=200
    assert_same_boxes(merge_tile_detections(fake_detector(truth, grid), grid, TILE), truth)


def test_overlapping_defects_of_different_classes_are_not_merged() -> None:
    grid = tile_grid((200, 360), TILE, (40, 40))
    truth = [((150.0, 50.0, 260.0, 120.0), 0), ((170.0, 60.0, 300.0, 110.0), 3)]
    merged = merge_tile_detections(fake_detector(truth, grid), grid, TILE)
    assert_same_boxes(merged, truth)


def test_a_defect_seen_whole_in_two_tiles_is_kept_once_with_the_best_score() -> None:
    grid = [(0, 0), (160, 0)]
    a = Detections(np.array([[170, 20, 190, 40]], np.float32), [0.6], [4])  # tile 0
    b = Detections(np.array([[10.5, 20, 30.5, 40]], np.float32), [0.8], [4])  # tile 1, half a pixel off
    nms = merge_tile_detections([a, b], grid, TILE)
    assert len(nms) == 1 and nms.scores.tolist() == pytest.approx([0.8])
    np.testing.assert_allclose(nms.xyxy, [[170.5, 20, 190.5, 40]])
    wbf = merge_tile_detections([a, b], grid, TILE, method="wbf")
    np.testing.assert_allclose(wbf.xyxy, [[170 + 0.5 * 0.8 / 1.4, 20, 190 + 0.5 * 0.8 / 1.4, 40]], atol=1e-4)


def test_same_class_boxes_inside_one_tile_are_left_to_the_detector() -> None:
    grid = [(0, 0), (160, 0)]
    inside = Detections(np.array([[10, 10, 60, 60], [40, 10, 110, 60]], np.float32), [0.9, 0.7], [0, 0])
    merged = merge_tile_detections([inside, Detections.empty()], grid, TILE)
    assert len(merged) == 2  # IoU 0.25 < 0.5, no tile border involved


def test_merge_is_independent_of_tile_order_and_leaves_inputs_alone() -> None:
    grid = tile_grid((600, 800), TILE, (40, 40))
    truth = [
        ((150.0, 50.0, 260.0, 120.0), 2),
        ((300.0, 300.0, 420.0, 330.0), 5),
        ((500.0, 10.0, 700.0, 30.0), 2),
    ]
    per_tile = fake_detector(truth, grid)
    snapshot = [(d.xyxy.copy(), d.scores.copy(), d.class_ids.copy()) for d in per_tile]
    merged = merge_tile_detections(per_tile, grid, TILE)
    perm = np.random.default_rng(0).permutation(len(grid))
    shuffled = merge_tile_detections([per_tile[i] for i in perm], [grid[i] for i in perm], TILE)
    np.testing.assert_array_equal(merged.xyxy, shuffled.xyxy)
    np.testing.assert_array_equal(merged.class_ids, shuffled.class_ids)
    for d, (xyxy, scores, classes) in zip(per_tile, snapshot, strict=True):
        np.testing.assert_array_equal(d.xyxy, xyxy)
        np.testing.assert_array_equal(d.scores, scores)
        np.testing.assert_array_equal(d.class_ids, classes)
    assert_same_boxes(merged, truth)


def test_boxes_in_the_padding_of_a_small_frame_are_clipped_or_dropped() -> None:
    grid = [(0, 0)]  # a 150x120 frame in one padded 200x200 tile
    dets = Detections(np.array([[100, 100, 180, 190], [130, 10, 190, 40]], np.float32), [0.9, 0.8], [0, 1])
    merged = merge_tile_detections([dets], grid, TILE, frame_hw=(150, 120))
    np.testing.assert_allclose(merged.xyxy, [[100, 100, 120, 150]])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_separated_boxes_survive_tiling_exactly(data: st.DataObject) -> None:
    """Any set of boxes at least 3 px apart comes back box for box (within a pixel)."""
    frame_hw = (data.draw(st.integers(150, 700)), data.draw(st.integers(150, 900)))
    overlap = data.draw(st.integers(0, 60))
    grid = tile_grid(frame_hw, TILE, (overlap, overlap))
    truth: list[tuple[tuple[float, float, float, float], int]] = []
    for _ in range(data.draw(st.integers(0, 6))):
        x1 = data.draw(st.integers(0, frame_hw[1] - 2))
        y1 = data.draw(st.integers(0, frame_hw[0] - 2))
        box = (
            float(x1),
            float(y1),
            float(data.draw(st.integers(x1 + 1, min(frame_hw[1], x1 + 400)))),
            float(data.draw(st.integers(y1 + 1, min(frame_hw[0], y1 + 400)))),
        )
        cls = data.draw(st.integers(0, 1))
        apart = all(
            box[0] >= o[2] + 3 or o[0] >= box[2] + 3 or box[1] >= o[3] + 3 or o[1] >= box[3] + 3
            for o, c in truth
            if c == cls
        ) and all(box_iou(np.array([box]), np.array([o]))[0, 0] < 0.5 for o, c in truth)
        if apart:
            truth.append((box, cls))
    merged = merge_tile_detections(fake_detector(truth, grid), grid, TILE, frame_hw=frame_hw)
    assert_same_boxes(merged, truth)


def test_tile_batch_ties_tiles_to_their_frames(neu_root) -> None:
    image = cv2.imread(str(neu_root / "images" / "scratches_2.jpg"), cv2.IMREAD_GRAYSCALE)
    frames = tuple(Frame("s", i, np.vstack([image] * 2), datetime(2024, 5, 1, tzinfo=UTC)) for i in range(2))
    grid = tile_grid((400, 200), TILE, (40, 40))
    tiles = np.concatenate([cut_tiles(f.image, grid, TILE) for f in frames])
    batch = TileBatch(tiles, frames, [0] * len(grid) + [1] * len(grid), grid * 2)
    assert len(batch) == 6 and batch.tile_hw == TILE
    assert batch.tiles_of(1).tolist() == [3, 4, 5]
    assert batch.offsets_xy[4].tolist() == [0, 160]
    with pytest.raises(ValueError, match="frame_index"):
        TileBatch(tiles, frames[:1], [0, 0, 0, 1, 1, 1], grid * 2)
    with pytest.raises(ValueError, match="6 tiles, 5 frame indices"):
        TileBatch(tiles, frames, [0] * 5, grid * 2)


def test_merge_keeps_two_boxes_of_one_tile_that_the_model_kept():
    """The model's own NMS already chose between boxes of one tile; the merger must not overrule it."""
    a = np.array([10.0, 10.0, 60.0, 60.0])
    b = np.array([20.0, 10.0, 70.0, 60.0])  # IoU with a = 40*50 / (2*2500 - 40*50) = 0.667
    one_tile = Detections(np.stack([a, b]), np.array([0.9, 0.8]), np.array([1, 1]))
    merged = merge_tile_detections([one_tile, Detections.empty()], [(0, 0), (200, 0)], (200, 200))
    assert len(merged) == 2
    # The same two boxes seen by two different tiles are duplicates: one survives.
    shifted = Detections(np.stack([b]) - np.array([150.0, 0, 150.0, 0]), np.array([0.8]), np.array([1]))
    overlap_grid = [(0, 0), (150, 0)]
    merged = merge_tile_detections(
        [Detections(np.stack([a]), np.array([0.9]), np.array([1])), shifted], overlap_grid, (200, 200)
    )
    assert len(merged) == 1
