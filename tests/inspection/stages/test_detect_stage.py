"""The detect stage on its own: the shipped YOLO-n bundle scores a batch holding the tiles of several real
NEU-DET frames, and each frame gets back its own tiles' detections in grid order; with several model calls
in flight, frames still leave in the order they came."""

from __future__ import annotations

import os
import threading
from typing import cast

import numpy as np
import pytest

from datasets.settings import REPO_ROOT
from inspection.detector import TileDetector, threads_per_call
from inspection.messages import FailedFrame, TileBatch, TileDetections
from inspection.stages.batch import combine
from inspection.stages.detect import DetectStage
from inspection.tiling import cut_tiles, tile_grid
from tests.inspection.stages.conftest import neu_frame, queues, run_to_end

BUNDLE = REPO_ROOT / "models" / "neu-yolo-n"


@pytest.fixture(scope="module")
def detector() -> TileDetector:
    if not (BUNDLE / "weights.safetensors").is_file():
        pytest.skip(f"no shipped model bundle at {BUNDLE}")
    return TileDetector(BUNDLE, device="cpu", threads=1)


def frame_batch(seq: int, image_index: int) -> TileBatch:
    frame = neu_frame(seq, image_index=image_index)
    grid = tile_grid((frame.height, frame.width), (128, 128), (32, 32))
    return TileBatch(
        tiles=cut_tiles(frame.image, grid, (128, 128)),
        frames=(frame,),
        frame_index=np.zeros(len(grid), np.int64),
        offsets_xy=np.asarray(grid, np.int64),
    )


def detect_stage(detector: TileDetector, abort: threading.Event, workers: int = 1) -> DetectStage:
    inbox, outbox = queues()
    return DetectStage(inbox, outbox, detector=detector, abort=abort, workers=workers)


class FirstCallHeld:
    """The real detector with its first call held until a later call has finished: a batch that finishes
    after the one behind it, as concurrent model calls do."""

    def __init__(self, detector: TileDetector) -> None:
        self.detector = detector
        self.calls = 0
        self.lock = threading.Lock()
        self.later_call_done = threading.Event()

    def detect(self, tiles: np.ndarray) -> tuple[list, str]:
        with self.lock:
            n, self.calls = self.calls, self.calls + 1
        if n == 0 and not self.later_call_done.wait(timeout=20):
            raise RuntimeError("no second model call ran beside the first")
        out = self.detector.detect(tiles)
        if n > 0:
            self.later_call_done.set()
        return out


def test_each_frame_gets_its_own_tiles_detections_in_grid_order(
    detector: TileDetector, abort: threading.Event
) -> None:
    # patches_* and scratches_* images: the trained model finds something on them
    batch = combine([frame_batch(0, image_index=600), frame_batch(1, image_index=1200)])
    expected, version = detector.detect(batch.tiles)  # the same tiles scored in one call
    out = run_to_end(detect_stage(detector, abort), [batch])
    assert [type(m) for m in out] == [TileDetections, TileDetections]
    for i, msg in enumerate(out):
        assert isinstance(msg, TileDetections)
        assert msg.frame is batch.frames[i] and msg.model_version == version
        assert msg.tile_hw == (128, 128) and msg.grid == ((0, 0), (72, 0), (0, 72), (72, 72))
        for got, want in zip(msg.per_tile, expected[4 * i : 4 * i + 4], strict=True):
            np.testing.assert_array_equal(got.xyxy, want.xyxy)
            np.testing.assert_array_equal(got.class_ids, want.class_ids)
    assert sum(len(d) for msg in out if isinstance(msg, TileDetections) for d in msg.per_tile) > 0


def test_with_two_model_calls_in_flight_frames_leave_in_order_though_a_later_batch_finishes_first(
    detector: TileDetector, abort: threading.Event
) -> None:
    batches = [frame_batch(seq, image_index=600 + 200 * seq) for seq in range(4)]
    held = FirstCallHeld(detector)
    out = run_to_end(detect_stage(cast(TileDetector, held), abort, workers=2), list(batches))
    assert held.later_call_done.is_set()  # the second batch was scored while the first was held
    assert [type(m) for m in out] == [TileDetections] * 4
    assert [m.frame.seq for m in out if isinstance(m, TileDetections)] == [0, 1, 2, 3]
    for batch, msg in zip(batches, out, strict=True):
        expected, _ = detector.detect(batch.tiles)
        assert isinstance(msg, TileDetections)
        for got, want in zip(msg.per_tile, expected, strict=True):
            np.testing.assert_array_equal(got.xyxy, want.xyxy)


def test_concurrent_model_calls_share_the_cores_unless_threads_are_set() -> None:
    cores = len(os.sched_getaffinity(0))
    assert threads_per_call(None, 1) is None  # one call: the runtime's own default
    assert threads_per_call(None, 2) == max(1, cores // 2)
    assert threads_per_call(3, 2) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_a_batch_the_model_cannot_score_fails_every_frame_in_it(
    detector: TileDetector, abort: threading.Event, workers: int
) -> None:
    good = frame_batch(0, image_index=0)
    empty_tiles = TileBatch(
        tiles=np.zeros((2, 0, 128), np.uint8),  # zero-height tiles: the model's resize refuses them
        frames=(good.frames[0], neu_frame(1)),
        frame_index=np.array([0, 1]),
        offsets_xy=np.zeros((2, 2), np.int64),
    )
    out = run_to_end(detect_stage(detector, abort, workers), [empty_tiles, good])
    assert [type(m) for m in out] == [FailedFrame, FailedFrame, TileDetections]
    assert [m.seq for m in out[:2]] == [0, 1]  # type: ignore[union-attr]
    assert all(m.reason.startswith("detect: error: ") for m in out[:2])  # type: ignore[union-attr]
