"""The sink stage on its own, on a real SQLite database: a frame and its new defect stored with their
evidence files, failed frames, source gaps and frames dropped by backpressure kept as rows, a frame
replayed after a restart stored once."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.detections import Detections
from inspection.messages import FailedFrame, FrameResult, Message, SourceGap, TrackedDefect
from inspection.queues import END, BoundedQueue
from inspection.stages.evidence import EvidenceOptions, EvidenceWriter
from inspection.stages.sink import Geometry, SinkStage
from inspection.storage.db import upgrade
from inspection.storage.paths import crop_path, frame_image_path, raw_frame_path, stored_raw_frame
from inspection.storage.repository import Repository
from inspection.storage.writer import ResilientWriter
from tests.inspection.daemon_fixtures import query, sqlite_db
from tests.inspection.stages.conftest import T0, neu_frame

SOURCE = "camera:top"
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = sqlite_db(tmp_path)
    upgrade(url)
    return url


@pytest.fixture
def sink(tmp_path: Path, db: str, abort: threading.Event) -> SinkStage:
    return SinkStage(
        BoundedQueue("sink", 64),
        abort=abort,
        writer=ResilientWriter(Repository(db), tmp_path / "spool.jsonl"),
        evidence=EvidenceWriter(EvidenceOptions(tmp_path / "out", True, "defects", True, 1e9), CLASSES, "L1"),
        geometry=Geometry(mm_per_line=0.5, mm_per_px=0.25),
        line="L1",
        coil="C1",
    )


def run_sink(sink: SinkStage, messages: list[Message]) -> None:
    """Feed ``messages`` and the end marker; the sink (the last stage, no outbox) runs until it drains."""
    for msg in messages:
        sink.inbox.put(msg)
    sink.inbox.put(END)
    sink.run()


def read_image(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"no image at {path}"
    return image


def scratch_result(seq: int) -> FrameResult:
    """A line-scan frame (starting at encoder line 1000) with one new scratch at rows 40-120."""
    frame = neu_frame(seq, image_index=1200, start_line=1000)
    xyxy = (20.0, 40.0, 60.0, 120.0)
    defect = TrackedDefect(5, "scratches", 0.87, xyxy, (20.0, 1040.0, 60.0, 1120.0), f"{seq}-0", seq, 0)
    dets = Detections(np.array([xyxy], np.float32), np.array([0.87], np.float32), np.array([5]))
    return FrameResult(frame, dets, (defect,), model_version="m-1", detect_ms=3.0)


def test_a_frame_and_its_new_defect_are_stored_with_positions_and_evidence(sink: SinkStage, db: str) -> None:
    run_sink(sink, [scratch_result(1)])
    [(status, coil, position_m, length_m, image_path)] = query(
        db,
        "SELECT f.status, c.code, f.position_m, f.length_m, f.image_path"
        " FROM frames f JOIN coils c ON c.id = f.coil_id",
    )
    assert (status, coil, position_m, length_m) == ("ok", "C1", 0.5, 0.1)  # line 1000 at 0.5 mm; 200 lines
    out = sink.evidence.options.output_dir
    assert image_path == str(frame_image_path(out, SOURCE, 1))
    [(cls, track, pos, cross, length, width, crop)] = query(
        db, "SELECT class_name, track_id, position_m, cross_m, length_m, width_m, crop_path FROM defects"
    )
    assert (cls, track, crop) == ("scratches", "1-0", str(crop_path(out, SOURCE, 1, "1-0")))
    assert np.allclose([pos, cross, length, width], [0.52, 0.005, 0.04, 0.01])
    assert read_image(crop).shape[:2] == (96, 56)  # the box and 8 px around it
    assert read_image(raw_frame_path(out, SOURCE, 1)).shape == (200, 200)
    assert (sink.tally.frames, sink.tally.defects, sink.tally.per_class["scratches"]) == (1, 1, 1)


def test_the_raw_frame_is_an_uncompressed_lossless_tiff_and_the_crop_a_jpeg(sink: SinkStage) -> None:
    run_sink(sink, [scratch_result(1)])
    out = sink.evidence.options.output_dir
    raw = raw_frame_path(out, SOURCE, 1)
    assert raw.suffix == ".tiff" and stored_raw_frame(out, SOURCE, 1) == raw
    assert np.array_equal(read_image(raw), scratch_result(1).frame.image)  # every pixel kept
    assert raw.stat().st_size >= 200 * 200  # not compressed: encoding it costs next to no CPU
    crop = crop_path(out, SOURCE, 1, "1-0")
    assert crop.suffix == ".jpg" and crop.read_bytes()[:2] == b"\xff\xd8"  # a JPEG stream


def test_a_png_raw_format_in_the_config_is_written_and_found_by_retraining(
    tmp_path: Path, sink: SinkStage
) -> None:
    options = EvidenceOptions(
        tmp_path / "png", True, "defects", True, 1e9, raw_format="png", crop_format="png"
    )
    writer = EvidenceWriter(options, CLASSES, "L1")
    evidence = writer.write_now(scratch_result(3))
    raw = stored_raw_frame(tmp_path / "png", SOURCE, 3)
    assert raw is not None and raw.suffix == ".png" and cv2.imread(str(raw)) is not None
    crop = evidence.crop_paths[0][1]
    assert (
        crop is not None and crop.endswith(".png") and stored_raw_frame(tmp_path / "png", SOURCE, 4) is None
    )


def test_an_evidence_folder_deleted_between_frames_is_made_again(sink: SinkStage, db: str) -> None:
    out = sink.evidence.options.output_dir
    first = sink.evidence.write_now(scratch_result(1))
    shutil.rmtree(out)  # a clean-up job, or an operator freeing space
    second = sink.evidence.write_now(scratch_result(2))
    assert first.problem is None and second.problem is None
    crop = second.crop_paths[0][1]
    assert stored_raw_frame(out, SOURCE, 2) is not None and crop is not None and Path(crop).is_file()


def test_a_frame_replayed_after_a_restart_is_stored_once(sink: SinkStage, db: str) -> None:
    run_sink(sink, [scratch_result(1), scratch_result(1)])
    assert query(db, "SELECT count(*) FROM frames") == [(1,)]
    assert query(db, "SELECT count(*) FROM defects") == [(1,)]
    assert (sink.tally.frames, sink.tally.duplicates) == (1, 1)


def test_failed_frames_gaps_and_dropped_frames_are_rows_never_silent(sink: SinkStage, db: str) -> None:
    sink.on_drop(neu_frame(3))  # the preprocess queue was full: the frame never reached the model
    gap = SourceGap(SOURCE, T0, T0 + timedelta(seconds=9), reason="camera reconnected")
    run_sink(sink, [FailedFrame(SOURCE, 2, T0, reason="truncated JPEG"), gap])
    rows = query(db, "SELECT seq, status, error FROM frames ORDER BY seq")
    assert rows == [(2, "failed", "truncated JPEG"), (3, "dropped", "dropped by backpressure (queue full)")]
    assert query(db, "SELECT source, reason FROM source_gaps") == [(SOURCE, "camera reconnected")]
    assert (sink.tally.frames_failed, sink.tally.frames_dropped, sink.tally.gaps) == (1, 1, 1)


def test_a_sink_writing_its_own_evidence_keeps_the_frame_scored_when_drawing_fails(
    sink: SinkStage, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``output.evidence_workers: 0``: the sink draws the evidence itself. Before the fix a drawing error
    went to the sink's broken-frame path: the frame was stored ``failed`` and its defect lost."""

    def broken(*args: object) -> np.ndarray:
        raise ValueError("bad box")

    monkeypatch.setattr("inspection.stages.evidence.draw_boxes", broken)
    run_sink(sink, [scratch_result(1)])
    problem = "evidence not saved: ValueError: bad box"
    assert query(db, "SELECT status, error FROM frames") == [("ok", problem)]
    assert query(db, "SELECT class_name FROM defects") == [("scratches",)]
