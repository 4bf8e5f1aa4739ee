"""The track stage on its own: one tracker per source, tracks reopened from a previous run, tracking
switched off (the matching rules themselves are in tests/inspection/test_tracking.py). Real NEU pixels."""

from __future__ import annotations

import threading

import numpy as np

from datasets.detections import Detections
from inspection.messages import Frame, FrameDetections, FrameResult
from inspection.stages.track import TrackerOptions, TrackStage
from inspection.storage.tracks import OpenTrack
from tests.inspection.stages.conftest import T0, neu_image, queues, run_to_end

CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
STRIP = np.vstack([neu_image(1200), neu_image(1201)])  # (400, 200): two scratches images, one strip
DEFECT_STRIP = (30.0, 120.0, 90.0, 180.0)  # strip lines 120-180: rows 120-180 of frame 0, 20-80 of frame 1


def strip_frame(start_line: int, source: str = "linescan:top") -> Frame:
    """Rows ``start_line .. start_line + 200`` of the strip, keyed by their first line."""
    return Frame(source, start_line, STRIP[start_line : start_line + 200].copy(), T0, start_line=start_line)


def seen(frame: Frame) -> FrameDetections:
    x1, y1, x2, y2 = DEFECT_STRIP
    box = np.array([[x1, y1 - frame.start_line, x2, y2 - frame.start_line]], np.float32)  # type: ignore[operator]
    dets = Detections(box, np.array([0.8], np.float32), np.array([5], np.int64))
    return FrameDetections(frame, dets, model_version="m-1", latency_ms=4.0)


def track_stage(abort: threading.Event, *, enabled: bool = True) -> TrackStage:
    inbox, outbox = queues()
    options = TrackerOptions(iou_threshold=0.5, hash_iou_threshold=0.2, max_hamming=10)
    return TrackStage(
        inbox, outbox, abort=abort, class_names=CLASSES, enabled=enabled, tracker_options=options
    )


def results(stage: TrackStage, *messages: FrameDetections) -> list[FrameResult]:
    out = run_to_end(stage, list(messages))
    assert all(isinstance(m, FrameResult) for m in out)
    return out  # type: ignore[return-value]


def test_a_defect_in_the_overlap_of_two_frames_is_new_once_then_seen_again(abort: threading.Event) -> None:
    first, second = results(track_stage(abort), seen(strip_frame(0)), seen(strip_frame(100)))
    [defect] = first.new_defects
    assert (defect.class_name, defect.strip_xyxy, defect.first_frame_seq) == ("scratches", DEFECT_STRIP, 0)
    assert (first.model_version, first.detect_ms) == ("m-1", 4.0) and len(first.detections) == 1
    assert second.new_defects == () and second.seen_again == (defect.track_id,)


def test_each_source_has_its_own_tracks(abort: threading.Event) -> None:
    top, bottom = results(track_stage(abort), seen(strip_frame(0)), seen(strip_frame(100, "linescan:bottom")))
    assert len(top.new_defects) == 1 and len(bottom.new_defects) == 1 and bottom.seen_again == ()


def test_with_tracking_off_every_sighting_is_a_new_defect(abort: threading.Event) -> None:
    first, second = results(track_stage(abort, enabled=False), seen(strip_frame(0)), seen(strip_frame(100)))
    assert len(first.new_defects) == 1 and len(second.new_defects) == 1 and second.seen_again == ()


def test_a_track_a_previous_run_left_open_is_seen_again_not_stored_twice(abort: threading.Event) -> None:
    stage = track_stage(abort)
    assert stage.resume("linescan:top", [OpenTrack("0-0", "scratches", DEFECT_STRIP, last_seq=0)]) == 1
    [again] = results(stage, seen(strip_frame(100)))
    assert again.new_defects == () and again.seen_again == ("0-0",)
