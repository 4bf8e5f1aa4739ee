"""The tile stage on its own: a real NEU-DET frame cut into model-sized tiles at the grid's corners (the
grid itself is tested against tables in tests/inspection/test_tiling.py)."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np

from inspection.messages import FailedFrame, TileBatch
from inspection.stages.tile import TileStage
from tests.inspection.stages.conftest import T0, neu_frame, queues, run_to_end


def tile_stage(abort: threading.Event, tile_hw: tuple[int, int], overlap_hw: tuple[int, int]) -> TileStage:
    inbox, outbox = queues()
    return TileStage(inbox, outbox, abort=abort, tile_hw=tile_hw, overlap_hw=overlap_hw)


def test_a_frame_becomes_one_batch_of_its_tiles_with_their_corners(abort: threading.Event) -> None:
    frame = neu_frame(3)
    [batch] = run_to_end(tile_stage(abort, (128, 128), (32, 32)), [frame])
    assert isinstance(batch, TileBatch) and batch.frames == (frame,)
    # 200 px in 128 px tiles: corners 0 and 72 (the last tile snapped to the edge), row by row
    assert batch.offsets_xy.tolist() == [[0, 0], [72, 0], [0, 72], [72, 72]]
    assert batch.frame_index.tolist() == [0, 0, 0, 0] and batch.tile_hw == (128, 128)
    for tile, (x, y) in zip(batch.tiles, batch.offsets_xy, strict=True):
        assert np.array_equal(tile, frame.image[y : y + 128, x : x + 128])


def test_a_tile_as_large_as_the_frame_is_the_frame(abort: threading.Event) -> None:
    frame = neu_frame(3, image_index=5)
    [batch] = run_to_end(tile_stage(abort, (200, 200), (0, 0)), [frame])
    assert isinstance(batch, TileBatch) and len(batch) == 1
    assert np.array_equal(batch.tiles[0], frame.image)


def test_a_failed_frame_passes_through_in_order(abort: threading.Event) -> None:
    failed = FailedFrame("camera:top", 2, T0 + timedelta(seconds=2), reason="truncated JPEG")
    out = run_to_end(tile_stage(abort, (128, 128), (32, 32)), [neu_frame(1), failed, neu_frame(3)])
    assert [type(m).__name__ for m in out] == ["TileBatch", "FailedFrame", "TileBatch"]
    assert out[1] is failed
