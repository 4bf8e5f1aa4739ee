"""The batch stage on its own: the tiles of several real NEU-DET frames packed into model batches of at
most ``max_tiles``, frames never split, failures kept in order with the frames around them."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np

from inspection.messages import FailedFrame, Frame, TileBatch
from inspection.stages.batch import BatchStage
from inspection.tiling import cut_tiles, tile_grid
from tests.inspection.stages.conftest import T0, neu_frame, queues, run_to_end

TILE_HW = (128, 128)


def tiles_of(frame: Frame) -> TileBatch:
    """What the tile stage makes of a 200x200 frame: four 128 px tiles."""
    grid = tile_grid((frame.height, frame.width), TILE_HW, (32, 32))
    return TileBatch(
        tiles=cut_tiles(frame.image, grid, TILE_HW),
        frames=(frame,),
        frame_index=np.zeros(len(grid), np.int64),
        offsets_xy=np.asarray(grid, np.int64),
    )


def batch_stage(abort: threading.Event, max_tiles: int) -> BatchStage:
    inbox, outbox = queues()
    # A minute's wait: every release here comes from a full batch, a failure or the end of the stream.
    return BatchStage(inbox, outbox, abort=abort, max_tiles=max_tiles, wait_ms=60_000)


def test_two_frames_fill_a_batch_and_the_third_leaves_at_the_end_of_the_stream(
    abort: threading.Event,
) -> None:
    frames = [neu_frame(i, image_index=i) for i in range(3)]
    first, second = run_to_end(batch_stage(abort, max_tiles=8), [tiles_of(f) for f in frames])
    assert isinstance(first, TileBatch) and isinstance(second, TileBatch)
    assert first.frames == (frames[0], frames[1]) and second.frames == (frames[2],)
    assert first.frame_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert np.array_equal(first.tiles[4:], tiles_of(frames[1]).tiles)
    assert np.array_equal(first.offsets_xy, np.concatenate([tiles_of(frames[0]).offsets_xy] * 2))


def test_a_frame_that_would_overfill_the_batch_starts_the_next_one(abort: threading.Event) -> None:
    frames = [neu_frame(i, image_index=i) for i in range(3)]
    out = run_to_end(batch_stage(abort, max_tiles=6), [tiles_of(f) for f in frames])
    assert [m.frames for m in out if isinstance(m, TileBatch)] == [(f,) for f in frames]
    assert all(len(m) == 4 for m in out if isinstance(m, TileBatch))


def test_a_failed_frame_releases_the_pending_batch_first(abort: threading.Event) -> None:
    frames = [neu_frame(0), neu_frame(2, image_index=2)]
    failed = FailedFrame("camera:top", 1, T0 + timedelta(seconds=1), reason="corrupt")
    out = run_to_end(batch_stage(abort, max_tiles=64), [tiles_of(frames[0]), failed, tiles_of(frames[1])])
    assert [type(m).__name__ for m in out] == ["TileBatch", "FailedFrame", "TileBatch"]
    assert out[0].frames == (frames[0],) and out[1] is failed and out[2].frames == (frames[1],)  # type: ignore[union-attr]
