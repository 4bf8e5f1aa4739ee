"""Evidence files are written beside the sink, not in it (issue 15, item 3): a slow or stalled image write
holds up neither the other frames' evidence nor the model's threads' priority, and nothing is lost on
the way (order kept, every frame in flight handed on before end of stream). Real NEU-DET images, real
files, a real SQLite; stalls are injected into the file writes (``Path.write_bytes``, as a slow disk
would hold them) and observed with events."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.detections import Detections
from datasets.settings import data_root
from inspection.daemon import Daemon, RunSummary
from inspection.messages import FailedFrame, Frame, FrameResult, Message, TrackedDefect
from inspection.queues import END, BoundedQueue, Empty, EndOfStream, QueueItem
from inspection.stages.evidence import EvidenceOptions, EvidenceWriter
from inspection.stages.evidence_stage import EvidenceStage
from tests.inspection.daemon_fixtures import (  # noqa: F401 - fixtures
    ModelBundle,
    assert_each_once,
    daemon_config,
    frame_rows,
    model_bundle_fixture,
    query,
    source_frames,
    strip_spec,
)

GUARD_S = 120  # an event not set within this long means the writer is stuck: a failure, not a timing
REAL_WRITE_BYTES = Path.write_bytes


class StalledImwrite:
    """A file write that holds the first annotated frame image until :attr:`release` is set, and notes
    each other image written meanwhile and the nice value of the thread writing it."""

    def __init__(self) -> None:
        self.stalled = threading.Event()  # the first frame image is being held
        self.release = threading.Event()
        self.written_meanwhile = threading.Event()  # another image was written while it was held
        self.nice_of_writers: set[int] = set()
        self._held: str | None = None
        self._lock = threading.Lock()

    def __call__(self, path: Path, data: bytes) -> int:
        self.nice_of_writers.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        with self._lock:
            hold = self._held is None and f"{os.sep}frames{os.sep}" in str(path)
            if hold:
                self._held = str(path)
        if hold:
            self.stalled.set()
            self.release.wait(GUARD_S)
        elif self.stalled.is_set() and not self.release.is_set():
            self.written_meanwhile.set()
        return REAL_WRITE_BYTES(path, data)


@pytest.fixture
def stalled_imwrite(monkeypatch: pytest.MonkeyPatch) -> Iterator[StalledImwrite]:
    stall = StalledImwrite()
    monkeypatch.setattr(Path, "write_bytes", lambda path, data: stall(path, data))  # a method: binds path
    try:
        yield stall
    finally:
        stall.release.set()  # never leave a writer thread waiting


def in_thread(run: Callable[[], RunSummary]) -> tuple[threading.Thread, list[RunSummary]]:
    out: list[RunSummary] = []
    thread = threading.Thread(target=lambda: out.append(run()), name="test-daemon", daemon=True)
    thread.start()
    return thread, out


def test_while_one_frame_image_write_is_stalled_other_frames_evidence_is_written_and_all_is_stored_after(
    tmp_path: Path, model_bundle: ModelBundle, stalled_imwrite: StalledImwrite
) -> None:
    """Before the change the sink wrote every image itself, one after another: with the first frame's
    image stalled no other image was written until it came back."""
    source = strip_spec(across=2, along=8)
    expected = [f.seq for f in source_frames(source)]
    cfg = daemon_config(tmp_path, source=source, bundle=model_bundle, output__save_frames="all")
    daemon = Daemon(cfg, once=True)
    thread, summaries = in_thread(daemon.run)
    assert stalled_imwrite.stalled.wait(GUARD_S), "no frame image was written"
    assert stalled_imwrite.written_meanwhile.wait(GUARD_S), "evidence stopped behind one stalled image"
    stalled_imwrite.release.set()
    thread.join(GUARD_S * 2)
    assert not thread.is_alive() and summaries
    rows = frame_rows(cfg.db)
    assert_each_once(rows, daemon.source_name, expected)
    assert {(r[3], r[4]) for r in rows} == {("ok", None)}, "a frame lost its evidence or its score"
    images = [p for (p,) in query(cfg.db, "SELECT image_path FROM frames")]
    assert len(images) == len(expected) and all(Path(p).is_file() for p in images)
    assert summaries[0].to_dict()["frames"] == len(expected)


# ------------------------------------------------------------------------- the stage fed by hand


def neu_frame(seq: int) -> Frame:
    paths = sorted((data_root() / "images").glob("*.jpg"))
    image = cv2.imread(str(paths[seq % len(paths)]), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return Frame("cam-1", seq, image, datetime.now(UTC))


def scored(seq: int) -> FrameResult:
    frame = neu_frame(seq)
    box = (20.0, 30.0, 80.0, 150.0)
    defect = TrackedDefect(2, "patches", 0.9, box, None, f"t{seq}", seq, 0)
    dets = Detections(np.array([box]), np.array([0.9]), np.array([2]))
    return FrameResult(frame, dets, (defect,))


def evidence_stage(tmp_path: Path, *, workers: int, nice: int) -> tuple[EvidenceStage, BoundedQueue]:
    options = EvidenceOptions(tmp_path / "out", True, "all", True, live_every_s=1e9)
    inbox, outbox = BoundedQueue("evidence", 8), BoundedQueue("sink", 64)
    writer = EvidenceWriter(options, ["crazing", "inclusion", "patches"], default_line="L1")
    stage = EvidenceStage(inbox, outbox, abort=threading.Event(), writer=writer, workers=workers, nice=nice)
    return stage, outbox


def seq_of(msg: QueueItem) -> tuple[str, int]:
    if isinstance(msg, FrameResult):
        return "result", msg.frame.seq
    assert isinstance(msg, FailedFrame)
    return "failed", msg.seq


def drained(outbox: BoundedQueue) -> list[QueueItem]:
    items: list[QueueItem] = []
    while True:
        try:
            items.append(outbox.get(timeout=GUARD_S))
        except Empty:
            raise AssertionError(f"no end of stream after {len(items)} items") from None
        if isinstance(items[-1], EndOfStream):
            return items


def test_frames_in_flight_at_end_of_stream_leave_in_order_with_their_files_before_the_marker(
    tmp_path: Path, stalled_imwrite: StalledImwrite
) -> None:
    stage, outbox = evidence_stage(tmp_path, workers=2, nice=0)
    stage.start()
    failed = FailedFrame("cam-1", 3, datetime.now(UTC), "decode: truncated file")
    sent: list[Message] = [scored(1), scored(2), failed, scored(4), scored(5)]
    for msg in sent:
        stage.inbox.put(msg)
    stage.inbox.put(END)
    assert stalled_imwrite.stalled.wait(GUARD_S)
    stalled_imwrite.release.set()
    out = drained(outbox)
    stage.join(GUARD_S)
    assert out[-1] is END and not stage.is_alive()
    assert [seq_of(m) for m in out[:-1]] == [seq_of(m) for m in sent]
    assert out[2] is failed
    for msg in (m for m in out if isinstance(m, FrameResult)):
        evidence = msg.evidence
        assert evidence is not None and evidence.problem is None and evidence.image_path is not None
        crop = evidence.crop_of(msg.new_defects[0].track_id)
        assert crop is not None and Path(crop).is_file() and Path(evidence.image_path).is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_evidence_is_encoded_by_threads_at_a_lower_priority_than_the_model(
    tmp_path: Path, stalled_imwrite: StalledImwrite
) -> None:
    """Before the change the sink encoded images at the model's priority, competing with it for cores."""
    stalled_imwrite.release.set()
    stage, outbox = evidence_stage(tmp_path, workers=1, nice=5)
    stage.start()
    stage.inbox.put(scored(1))
    stage.inbox.put(END)
    drained(outbox)
    stage.join(GUARD_S)
    model_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert stalled_imwrite.nice_of_writers and min(stalled_imwrite.nice_of_writers) > model_nice


def test_an_unexpected_error_while_drawing_evidence_keeps_the_frame_scored_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> np.ndarray:
        raise ValueError("bad box")

    monkeypatch.setattr("inspection.stages.evidence.draw_boxes", broken)
    stage, outbox = evidence_stage(tmp_path, workers=1, nice=0)
    stage.start()
    stage.inbox.put(scored(1))
    stage.inbox.put(END)
    out = drained(outbox)
    stage.join(GUARD_S)
    result = out[0]
    assert isinstance(result, FrameResult) and result.evidence is not None
    assert result.evidence.problem == "evidence not saved: ValueError: bad box"
    assert result.evidence.image_path is None and len(result.new_defects) == 1
