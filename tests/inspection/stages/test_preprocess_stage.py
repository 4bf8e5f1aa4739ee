"""The preprocess stage on its own: configured OpenCV ops on real NEU-DET frames, the resize scale kept so
boxes can go back to source pixels, and a broken op turning the frame into a failed frame."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from inspection.messages import FailedFrame, Frame
from inspection.preprocess import PreprocessConfig, build_preprocess
from inspection.stages.preprocess import PreprocessStage
from tests.inspection.stages.conftest import neu_frame, neu_image, queues, run_to_end


def preprocess_stage(ops: list[dict[str, object]], abort: threading.Event) -> PreprocessStage:
    cfg = PreprocessConfig.model_validate({"ops": ops})
    inbox, outbox = queues()
    return PreprocessStage(inbox, outbox, abort=abort, op=build_preprocess(cfg), identity=not cfg.ops)


def test_without_ops_the_frame_passes_through_as_it_is(abort: threading.Event) -> None:
    frame = neu_frame(1)
    assert run_to_end(preprocess_stage([], abort), [frame]) == [frame]


def test_a_blur_changes_the_pixels_but_not_the_frame_size_or_key(abort: threading.Event) -> None:
    frame = neu_frame(1)
    [out] = run_to_end(preprocess_stage([{"op": "median_blur", "ksize": 5}], abort), [frame])
    assert isinstance(out, Frame) and (out.source, out.seq) == (frame.source, frame.seq)
    assert np.array_equal(out.image, cv2.medianBlur(neu_image(0), 5))
    assert not np.array_equal(out.image, frame.image)
    assert "preprocess_scale_xy" not in out.meta
    assert np.array_equal(frame.image, neu_image(0))  # the input frame is never written into


def test_a_resize_records_the_scale_back_to_source_pixels(abort: threading.Event) -> None:
    [out] = run_to_end(
        preprocess_stage([{"op": "resize", "width": 100, "height": 50}], abort), [neu_frame(1)]
    )
    assert isinstance(out, Frame) and out.image.shape == (50, 100)
    assert out.meta["preprocess_scale_xy"] == (2.0, 4.0)


def test_an_op_that_fails_makes_a_failed_frame_with_the_reason_and_the_next_frame_goes_on(
    abort: threading.Event,
) -> None:
    calls: list[int] = []

    def op(image: np.ndarray) -> np.ndarray:  # the first frame breaks the op, the second does not
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("flat-field reference is 512x512, frame is 200x200")
        return cv2.medianBlur(image, 3)

    inbox, outbox = queues()
    stage = PreprocessStage(inbox, outbox, abort=abort, op=op, identity=False)
    failed, ok = run_to_end(stage, [neu_frame(7), neu_frame(8)])
    assert isinstance(failed, FailedFrame) and failed.seq == 7
    assert failed.reason == "preprocess: ValueError: flat-field reference is 512x512, frame is 200x200"
    assert isinstance(ok, Frame) and ok.seq == 8 and stage.handled == 2
