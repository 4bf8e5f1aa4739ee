"""The daemon closes coils (issue 16.4): when a source moves to the next coil, when it drains, after a
configured gap without frames, and on restart for coils a killed run left open. Real SQLite, real frames."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from datasets.detections import Detections
from datasets.settings import data_root
from inspection.daemon import Daemon
from inspection.messages import Frame, FrameResult
from inspection.queues import END, BoundedQueue
from inspection.stages.sink import Geometry, SinkStage
from inspection.storage.db import upgrade
from inspection.storage.repository import FrameRecord, Repository
from inspection.storage.writer import ResilientWriter
from tests.inspection.daemon_fixtures import (
    ModelBundle,
    daemon_config,
    query,
    sqlite_db,
    strip_spec,
    wait_for,
)

SOURCE = "camera:top"
T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
IMAGE = cv2.imread(str(sorted((data_root() / "images").glob("*.jpg"))[0]), cv2.IMREAD_GRAYSCALE)


def coil_rows(db: str) -> dict[str, tuple]:
    rows = query(db, "SELECT code, started_at, ended_at, length_m FROM coils")
    return {code: (started, ended, length) for code, started, ended, length in rows}


def as_utc(value: object) -> datetime:
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp


def result(seq: int, coil: str) -> FrameResult:
    """A 200-line frame of ``coil`` starting at encoder line ``seq * 200`` (no overlap): 0.1 m at 0.5 mm."""
    frame = Frame(
        SOURCE, seq, IMAGE, T0 + timedelta(seconds=seq), start_line=seq * 200, line_id="L1", coil=coil
    )
    return FrameResult(frame, Detections.empty(), ())


class RunningSink:
    """A sink stage on a real SQLite database, fed by hand."""

    def __init__(self, tmp_path: Path, *, gap_s: float | None) -> None:
        self.db = sqlite_db(tmp_path)
        upgrade(self.db)
        self.inbox = BoundedQueue("sink", 16)
        writer = ResilientWriter(Repository(self.db), tmp_path / "spool.jsonl")
        self.sink = SinkStage(
            self.inbox,
            abort=threading.Event(),
            writer=writer,
            class_names=["crazing"],
            geometry=Geometry(0.5, 0.5),
            line="L1",
            coil=None,
            output_dir=tmp_path / "out",
            save_crops=False,
            save_frames="none",
            live_every_s=1e9,
            coil_gap_s=gap_s,
        )
        self.sink.start()

    def feed(self, *results: FrameResult) -> None:
        for item in results:
            self.inbox.put(item)

    def finish(self) -> None:
        self.inbox.put(END)
        self.sink.join(timeout=60)
        assert not self.sink.is_alive()


def test_a_coil_ends_when_its_source_moves_to_the_next_coil_and_the_last_one_on_drain(tmp_path: Path) -> None:
    """Before the fix no coil was ever closed: ended_at and length_m stayed empty."""
    run = RunningSink(tmp_path, gap_s=None)
    run.feed(result(0, "A"), result(1, "A"), result(2, "A"))
    run.feed(result(3, "B"))
    wait_for(lambda: coil_rows(run.db).get("A", (None, None))[1] is not None, timeout=30, what="A closed")
    assert coil_rows(run.db)["B"][1] is None  # B is still running
    run.feed(result(4, "B"))
    run.finish()
    coils = coil_rows(run.db)
    assert as_utc(coils["A"][0]) == T0 and as_utc(coils["A"][1]) == T0 + timedelta(seconds=2)
    assert as_utc(coils["B"][1]) == T0 + timedelta(seconds=4)
    assert np.isclose(coils["A"][2], 0.3) and np.isclose(coils["B"][2], 0.2)  # 3 and 2 frames of 0.1 m
    assert run.sink.tally.coils_closed == 2


def test_a_coil_silent_for_the_gap_ends_and_reopens_when_it_goes_on(tmp_path: Path) -> None:
    run = RunningSink(tmp_path, gap_s=0.5)
    run.feed(result(0, "A"), result(1, "A"))
    wait_for(lambda: coil_rows(run.db).get("A", (None, None))[1] is not None, timeout=30, what="gap close")
    assert np.isclose(coil_rows(run.db)["A"][2], 0.2)
    run.feed(result(2, "A"))  # the line runs again: the same coil goes on
    wait_for(lambda: coil_rows(run.db)["A"][1] is None, timeout=30, what="A reopened")
    run.finish()
    started, ended, length = coil_rows(run.db)["A"]
    assert as_utc(started) == T0 and as_utc(ended) == T0 + timedelta(seconds=2) and np.isclose(length, 0.3)


def test_a_restart_closes_the_coil_a_killed_run_left_open_and_drain_closes_the_new_one(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    source = strip_spec(across=2, along=4, coil="c1")
    cfg = daemon_config(tmp_path, source=source, bundle=model_bundle)
    upgrade(cfg.db)
    killed_run = Repository(cfg.db)  # what a run killed -9 on coil c0 left: frames, the coil still open
    for seq in (10**9, 10**9 + 1):
        frame = FrameRecord(
            source=source, seq=seq, line="test-line", coil="c0", captured_at=T0, length_m=0.25
        )
        killed_run.record_frame(frame)
    killed_run.dispose()
    assert coil_rows(cfg.db)["c0"][1] is None

    summary = Daemon(cfg, once=True).run()
    coils = coil_rows(cfg.db)
    assert as_utc(coils["c0"][1]) == T0 and np.isclose(coils["c0"][2], 0.5)  # backfilled
    (length,) = query(
        cfg.db, "SELECT SUM(f.length_m) FROM frames f JOIN coils c ON c.id = f.coil_id WHERE c.code = 'c1'"
    )[0]
    assert coils["c1"][1] is not None and np.isclose(coils["c1"][2], length) and length > 0
    assert summary.to_dict()["coils_closed"] == 1
