"""The merge stage on its own: one frame's per-tile detections become one set of boxes in the source
frame's pixels (the merge rules themselves are tested against tables in tests/inspection/test_tiling.py)."""

from __future__ import annotations

import threading

import numpy as np

from datasets.detections import Detections
from inspection.messages import Frame, FrameDetections, TileDetections
from inspection.stages.merge import MergeStage
from tests.inspection.stages.conftest import neu_frame, queues, run_to_end

GRID = ((0, 0), (72, 0))  # two 128 px tiles side by side, 56 px of overlap


def dets(*boxes: tuple[float, float, float, float], scores: tuple[float, ...], cls: int = 5) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.full(len(boxes), cls, np.int64),
    )


def merge(frame: Frame, per_tile: tuple[Detections, ...], abort: threading.Event) -> FrameDetections:
    inbox, outbox = queues()
    stage = MergeStage(inbox, outbox, abort=abort, method="nms", iou_threshold=0.5)
    msg = TileDetections(frame, per_tile, GRID, (128, 128), model_version="m-3", detect_ms=12.5)
    [out] = run_to_end(stage, [msg])
    assert isinstance(out, FrameDetections) and out.frame is frame
    assert (out.model_version, out.latency_ms) == ("m-3", 12.5)
    return out


def test_a_defect_seen_whole_in_two_overlapping_tiles_is_one_box_in_frame_pixels(
    abort: threading.Event,
) -> None:
    left = dets((80, 10, 100, 30), scores=(0.9,))
    right = dets((8, 10, 28, 30), scores=(0.7,))  # the same place: 72 px further right in the frame
    out = merge(neu_frame(1), (left, right), abort)
    assert out.detections.xyxy.tolist() == [[80, 10, 100, 30]]
    assert out.detections.scores.tolist() == [np.float32(0.9)] and out.detections.class_ids.tolist() == [5]


def test_a_resized_frame_gets_its_boxes_back_in_source_pixels(abort: threading.Event) -> None:
    frame = neu_frame(1).with_image(neu_frame(1).image, preprocess_scale_xy=(2.0, 0.5))
    out = merge(frame, (Detections.empty(), dets((10, 10, 30, 30), scores=(0.8,))), abort)
    assert out.detections.xyxy.tolist() == [[164, 5, 204, 15]]  # (82, 10, 102, 30) scaled x2, x0.5


def test_boxes_are_clipped_to_the_frame_and_a_frame_without_detections_has_none(
    abort: threading.Event,
) -> None:
    out = merge(neu_frame(1), (Detections.empty(), dets((100, 180, 140, 230), scores=(0.6,))), abort)
    assert out.detections.xyxy.tolist() == [[172, 180, 200, 200]]  # the tile's padding is not the frame
    empty = merge(neu_frame(2), (Detections.empty(), Detections.empty()), abort)
    assert len(empty.detections) == 0
