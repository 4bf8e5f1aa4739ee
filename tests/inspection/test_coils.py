"""The daemon closes coils (issue 16.4): when a source moves to the next coil, when it drains, after a
configured gap without frames, and on restart for coils a killed run left open; and it grades each coil it
closes by the inspection config's rules (16.13). Real SQLite (and PostgreSQL), real frames."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from datasets.detections import Detections
from datasets.settings import data_root
from inspection.daemon import Daemon
from inspection.messages import Frame, FrameResult, TrackedDefect
from inspection.queues import END, BoundedQueue
from inspection.stages.evidence import EvidenceOptions, EvidenceWriter
from inspection.stages.sink import Geometry, SinkStage
from inspection.storage.coil_events import CoilEvent, record_coil_event
from inspection.storage.db import upgrade
from inspection.storage.frames import record_frame
from inspection.storage.grading import GradeRule, GradingRules
from inspection.storage.records import FrameRecord
from inspection.storage.repository import Repository
from inspection.storage.spool import Spool, replay
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


# a single crazing defect scraps a coil; more than 10 defects per 100 m make it B
CRITICAL = GradingRules(
    grades=("A", "B", "scrap"),
    rules=[
        GradeRule(grade="scrap", classes=("crazing",), min_score=0.5, max_count=0),
        GradeRule(grade="B", max_per_100m=10.0),
    ],
)


def result(seq: int, coil: str, *, crazing: bool = False) -> FrameResult:
    """A 200-line frame of ``coil`` starting at encoder line ``seq * 200`` (no overlap): 0.1 m at 0.5 mm;
    with ``crazing``, one new crazing defect scored 0.9."""
    frame = Frame(
        SOURCE, seq, IMAGE, T0 + timedelta(seconds=seq), start_line=seq * 200, line_id="L1", coil=coil
    )
    box = (20.0, 30.0, 80.0, 90.0)
    strip = (box[0], box[1] + seq * 200, box[2], box[3] + seq * 200)
    defects = (TrackedDefect(0, "crazing", 0.9, box, strip, f"t{seq}", seq, 0),) if crazing else ()
    return FrameResult(frame, Detections.empty(), defects)


def grade_rows(db: str) -> dict[str, tuple[str, str, str]]:
    """Coil code -> (grade, reasons, rules digest) of every stored grade."""
    rows = query(
        db,
        "SELECT c.code, g.grade, g.reasons, g.rules_digest "
        "FROM coil_grades g JOIN coils c ON c.id = g.coil_id",
    )
    return {code: (grade, str(reasons), digest) for code, grade, reasons, digest in rows}


class RunningSink:
    """A sink stage on a real SQLite database, fed by hand."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        gap_s: float | None,
        db: str | None = None,
        grading: GradingRules | None = None,
    ) -> None:
        self.db = db or sqlite_db(tmp_path)
        upgrade(self.db)
        self.inbox = BoundedQueue("sink", 16)
        writer = ResilientWriter(Repository(self.db), tmp_path / "spool.jsonl")
        self.sink = SinkStage(
            self.inbox,
            abort=threading.Event(),
            writer=writer,
            evidence=EvidenceWriter(
                EvidenceOptions(tmp_path / "out", False, "none", True, 1e9), ["crazing"], "L1"
            ),
            geometry=Geometry(0.5, 0.5),
            line="L1",
            coil=None,
            coil_gap_s=gap_s,
            coil_grading=grading,
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


def test_each_coil_the_daemon_closes_is_graded_by_the_configured_rules(tmp_path: Path, db_url: str) -> None:
    """Before, the daemon closed coils without grading them: no grade until a writable dashboard ran."""
    run = RunningSink(tmp_path, gap_s=1.0, db=db_url, grading=CRITICAL)
    run.feed(result(0, "A", crazing=True), result(1, "A"))
    run.feed(result(2, "B"))  # the next coil: A ends
    wait_for(lambda: "A" in grade_rows(db_url), timeout=30, what="A graded")
    wait_for(lambda: "B" in grade_rows(db_url), timeout=30, what="B graded after the gap")
    run.feed(result(3, "C"), *(result(seq, "C", crazing=seq % 2 == 0) for seq in (4, 5)))
    run.finish()  # drain: C ends
    grades = grade_rows(db_url)
    assert {code: grade for code, (grade, _, _) in grades.items()} == {"A": "scrap", "B": "A", "C": "scrap"}
    assert {digest for _, _, digest in grades.values()} == {CRITICAL.digest}
    assert "crazing" in grades["A"][1] and "crazing" in grades["C"][1]
    ((defects_on_c,),) = query(
        db_url, "SELECT COUNT(*) FROM defects d JOIN coils c ON c.id = d.coil_id WHERE c.code = 'C'"
    )
    assert defects_on_c == 1  # one crazing defect on 0.3 m: 333 per 100 m also breaks the B rule
    assert "per 100 m" in grades["C"][1]


def test_a_coil_end_spooled_while_the_database_was_away_is_graded_when_replayed(tmp_path: Path) -> None:
    """The end event carries the rules in force when the coil closed: the replay grades by them."""
    db = sqlite_db(tmp_path)
    upgrade(db)
    repository = Repository(db)
    with repository.transaction() as s:
        for seq in (0, 1):
            record_frame(
                s, FrameRecord(source=SOURCE, seq=seq, line="L1", coil="A", captured_at=T0, length_m=0.1)
            )
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append(CoilEvent(line="L1", coil="A", kind="end", at=T0, grading=CRITICAL))
    spool.close()
    assert replay(Spool(tmp_path / "spool.jsonl"), repository).stored == 1
    repository.dispose()
    assert grade_rows(db) == {"A": ("A", "[]", CRITICAL.digest)}


def test_a_coil_reopened_after_a_gap_loses_its_partial_grade_until_it_closes_again(tmp_path: Path) -> None:
    """A gap closes (and grades) a coil; frames of the same coil after the gap reopen it. Before the fix
    the grade of the partial coil stayed, so an open coil showed a grade on the Overview and coil map."""
    db = sqlite_db(tmp_path)
    upgrade(db)
    repository = Repository(db)
    events = [
        CoilEvent(line="L1", coil="A", kind="start", at=T0),
        CoilEvent(line="L1", coil="A", kind="end", at=T0 + timedelta(minutes=20), grading=CRITICAL),
        CoilEvent(line="L1", coil="A", kind="start", at=T0 + timedelta(minutes=30)),
    ]
    with repository.transaction() as s:
        for event in events[:2]:
            record_coil_event(s, event)
    assert set(grade_rows(db)) == {"A"}
    with repository.transaction() as s:
        record_coil_event(s, events[2])
    assert grade_rows(db) == {} and coil_rows(db)["A"][1] is None  # open again, no grade
    with repository.transaction() as s:
        record_coil_event(
            s, CoilEvent(line="L1", coil="A", kind="end", at=T0 + timedelta(hours=1), grading=CRITICAL)
        )
    assert set(grade_rows(db)) == {"A"}
    repository.dispose()


def test_a_restart_grades_every_coil_a_killed_run_left_open_not_only_the_first_batch(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    """Grading runs in batches of 500 coils; before the fix the daemon graded one batch at start, so the
    501st coil kept no grade (or, after a rules change, its old one)."""
    source = strip_spec(across=1, along=2, coil="new")
    cfg = daemon_config(tmp_path, source=source, bundle=model_bundle)
    upgrade(cfg.db)
    killed_run = Repository(cfg.db)
    with killed_run.transaction() as s:
        for i in range(501):
            at = T0 + timedelta(seconds=i)
            record_frame(
                s, FrameRecord(source=source, seq=10**9 + i, line="test-line", coil=f"k{i}", captured_at=at)
            )
    killed_run.dispose()
    Daemon(cfg, once=True).run()
    grades = grade_rows(cfg.db)
    assert {f"k{i}" for i in range(501)} | {"new"} == set(grades)


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
        with killed_run.transaction() as s:
            record_frame(s, frame)
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
    grades = grade_rows(cfg.db)  # the backfilled coil at start, the drained one at its end
    assert set(grades) == {"c0", "c1"} and {d for _, _, d in grades.values()} == {cfg.grading.digest}
