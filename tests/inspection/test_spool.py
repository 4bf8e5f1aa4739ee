"""The spool and the resilient writer: torn writes after kill -9, replays into fresh and half-filled
databases, and a database that goes away (injected driver errors on both backends, a real refusal on
PostgreSQL)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import ORMExecuteState, Session

from inspection.storage.db import upgrade
from inspection.storage.frames import processed_seqs
from inspection.storage.records import AlarmRecord, DefectRecord, FrameRecord, GapRecord
from inspection.storage.repository import Repository
from inspection.storage.schema import Alarm, Defect, Frame
from inspection.storage.spool import (
    ReplayResult,
    Spool,
    SpooledFrame,
    encode_entry,
    is_connection_error,
    rejected_path,
    replay,
)
from inspection.storage.writer import ResilientWriter
from tests.inspection.kill_child import kill_after_acknowledged

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
SOURCE = "strip-sim:spool"


def result(seq: int, n_defects: int | None = None) -> SpooledFrame:
    """Frame ``seq`` with ``seq % 4`` defects (so some frames have none)."""
    n = seq % 4 if n_defects is None else n_defects
    frame = FrameRecord(
        source=SOURCE,
        seq=seq,
        processed_at=T0 + timedelta(seconds=seq),
        line="L1",
        coil="C-7",
        start_line=seq * 512,
        position_m=seq * 0.256,
        length_m=0.2,
        model_version="v1",
        height=600,
        width=1200,
    )
    defects = tuple(
        DefectRecord(
            class_name=("crazing", "patches", "scratches")[i % 3],
            score=0.5 + 0.1 * i,
            xyxy=(40.0 * i, 10.0, 40.0 * i + 30.0, 50.5),
            position_m=seq * 0.256 + 0.01,
            track_id=f"{seq}-{i}",
            first_frame_seq=seq,
            last_frame_seq=seq,
        )
        for i in range(n)
    )
    return SpooledFrame(frame, defects)


def counts(repo: Repository) -> tuple[int, int, int]:
    with repo.transaction() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Frame, Defect, Alarm))


def expected_defects(seqs) -> int:
    return sum(seq % 4 for seq in seqs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """Makes every statement on ``engine`` fail with the driver's own OperationalError while ``active``,
    as a server that went away does; SQLAlchemy wraps it exactly like a real one."""

    def __init__(self, engine: Engine) -> None:
        self.active = False
        self.error = engine.dialect.loaded_dbapi.OperationalError
        for name in ("do_execute", "do_executemany", "do_execute_no_params"):
            event.listen(engine, name, self._maybe_fail)

    def _maybe_fail(self, *args) -> None:
        if self.active:
            raise self.error("simulated outage: server closed the connection unexpectedly")


def test_append_and_read_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool" / "results.jsonl")
    assert not spool.pending() and list(spool.entries()) == []
    entries = [
        result(1),
        result(2),
        AlarmRecord(source=SOURCE, seq=2, sink="plc", kind="reject", sent_at=T0, payload={"ok": False}),
        GapRecord(
            source=SOURCE,
            started_at=T0,
            ended_at=T0 + timedelta(seconds=4),
            reason="camera lost",
            line="L1",
            first_missing_line=1024,
            missing_lines=2048,
        ),
        SpooledFrame(result(3).frame, result(3).defects, seen_again=("2-0", "2-1")),
    ]
    for entry in entries:
        spool.append(entry)
    spool.close()
    assert spool.pending()
    assert list(Spool(spool.path).entries()) == entries
    lines = spool.path.read_bytes().splitlines()
    assert len(lines) == 5
    first = json.loads(lines[0])  # plain JSON lines: readable with any tool
    assert (first["v"], first["record"]["kind"], first["record"]["frame"]["seq"]) == (1, "frame", 1)
    assert first["len"] == len(json.dumps(first["record"], sort_keys=True, separators=(",", ":")))


def test_torn_last_line_is_ignored_then_cut_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "results.jsonl"
    spool = Spool(path)
    for seq in (1, 2, 3):
        spool.append(result(seq))
    spool.close()
    with open(path, "ab") as fh:  # kill -9 in the middle of the fourth write
        fh.write(encode_entry(result(4))[:57])
    with caplog.at_level(logging.WARNING):
        assert [e.frame.seq for e in Spool(path).entries()] == [1, 2, 3]
    assert "torn last line" in caplog.text
    caplog.clear()
    restarted = Spool(path)
    with caplog.at_level(logging.WARNING):
        restarted.append(result(5))  # must not glue onto the torn remnant
    restarted.close()
    assert "dropping a torn last record" in caplog.text
    assert [e.frame.seq for e in Spool(path).entries()] == [1, 2, 3, 5]
    assert all(line.problem is None for line in Spool(path).lines())


def test_complete_record_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(encode_entry(result(1)) + encode_entry(result(2))[:-1])
    assert [e.frame.seq for e in Spool(path).entries()] == [1, 2]
    spool = Spool(path)
    spool.append(result(3))
    spool.close()
    assert [e.frame.seq for e in Spool(path).entries()] == [1, 2, 3]


def test_corrupt_line_in_the_middle_is_detected(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "results.jsonl"
    good = [encode_entry(result(seq, n_defects=1)) for seq in (1, 2, 3)]
    flipped = good[1].replace(b'"score":0.5', b'"score":0.6')  # still valid JSON, wrong content
    assert flipped != good[1]
    path.write_bytes(good[0] + flipped + good[2])
    with caplog.at_level(logging.WARNING):
        assert [e.frame.seq for e in Spool(path).entries()] == [1, 3]
    problems = [line.problem for line in Spool(path).lines()]
    assert problems[0] is None and "guard" in problems[1] and problems[2] is None


def spooled_stream(path: Path, seqs: range) -> Spool:
    """A spool as an outage leaves it: frames (one of them spooled twice), alarms, and a torn tail."""
    spool = Spool(path)
    for seq in seqs:
        spool.append(result(seq))
        if seq % 5 == 0:
            spool.append(
                AlarmRecord(
                    source=SOURCE, seq=seq, sink="plc", kind="reject", sent_at=T0, track_id=f"{seq}-0"
                )
            )
    spool.append(result(seqs[3]))  # the same frame again: replay must store it once
    spool.close()
    with open(path, "ab") as fh:
        fh.write(encode_entry(result(seqs[-1] + 1))[:-20])
    return spool


def test_replay_into_a_fresh_database_gives_exact_counts(db_url: str, tmp_path: Path) -> None:
    seqs = range(1, 21)
    spool = spooled_stream(tmp_path / "results.jsonl", seqs)
    upgrade(db_url)
    repo = Repository(db_url)
    try:
        done = replay(spool, repo)
        assert done == ReplayResult(stored=20 + 4, duplicates=1, corrupt=1, rejected=0)
        assert counts(repo) == (20, expected_defects(seqs), 4)
        with repo.transaction() as s:
            assert processed_seqs(s, SOURCE) == set(seqs)
        assert not spool.path.exists()  # removed once everything is committed
        assert "torn last line" in rejected_path(spool).read_text()  # kept aside for a human
        assert replay(spool, repo) == ReplayResult()  # nothing left to do
        with repo.transaction() as s:  # written in spool order
            assert s.scalars(select(Frame.seq).order_by(Frame.id)).all() == list(seqs)
    finally:
        repo.dispose()


class DiesAfter:
    """A repository whose connection is lost after ``n`` frames (a replay interrupted halfway)."""

    def __init__(self, repo: Repository, n: int) -> None:
        self.repo, self.left = repo, n

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.repo.transaction() as session:
            event.listen(session, "do_orm_execute", self._count_frame)
            yield session

    def _count_frame(self, state: ORMExecuteState) -> None:
        if state.is_insert and state.statement.table.name == Frame.__tablename__:  # type: ignore[attr-defined]
            if self.left == 0:
                raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
            self.left -= 1


def test_interrupted_replay_resumes_without_duplicates(db_url: str, tmp_path: Path) -> None:
    seqs = range(1, 21)
    spool = spooled_stream(tmp_path / "results.jsonl", seqs)
    upgrade(db_url)
    repo = Repository(db_url)
    try:
        with pytest.raises(OperationalError):
            replay(spool, DiesAfter(repo, 7))
        assert spool.path.exists()
        assert counts(repo) == (7, expected_defects(range(1, 8)), 1)
        done = replay(spool, repo)
        assert (done.stored, done.duplicates) == (20 - 7 + 3, 7 + 1 + 1)
        assert counts(repo) == (20, expected_defects(seqs), 4)
        assert not spool.path.exists()
    finally:
        repo.dispose()


def test_replay_sets_refused_records_aside(sqlite_url: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "results.jsonl")
    spool.append(result(1))
    bad = result(2, n_defects=1)
    spool.append(SpooledFrame(bad.frame, (DefectRecord(class_name="crazing", score=1.5, xyxy=(0, 0, 5, 5)),)))
    spool.append(AlarmRecord(source=SOURCE, seq=99, sink="plc", kind="reject"))  # its frame never came
    spool.append(result(3))
    upgrade(sqlite_url)
    repo = Repository(sqlite_url)
    try:
        assert replay(spool, repo) == ReplayResult(stored=2, rejected=2)
        with repo.transaction() as s:
            assert processed_seqs(s, SOURCE) == {1, 3}
        reasons = [json.loads(line)["reason"] for line in rejected_path(spool).read_text().splitlines()]
        assert reasons[0].startswith("IntegrityError") and reasons[1].startswith("LookupError")
    finally:
        repo.dispose()


def test_connection_errors_are_told_from_bad_records() -> None:
    assert is_connection_error(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert not is_connection_error(IntegrityError("INSERT", {}, Exception("CHECK constraint failed")))
    assert not is_connection_error(ValueError("bad"))


def test_resilient_writer_spools_while_the_database_is_away(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    repo = Repository(db_url)
    outage = Outage(repo.engine)
    clock = FakeClock()
    spool = tmp_path / "spool.jsonl"
    writer = ResilientWriter(repo, spool, retry_initial_s=0.5, retry_max_s=4.0, clock=clock)
    try:
        write = lambda seq: writer.write_frame(result(seq).frame, result(seq).defects)  # noqa: E731
        assert write(0) == "stored"
        outage.active = True
        assert [write(seq) for seq in range(1, 6)] == ["spooled"] * 5
        alarm = AlarmRecord(source=SOURCE, seq=5, sink="plc", kind="reject", sent_at=T0)
        assert writer.write_alarm(alarm) == "spooled"  # queued behind its frame
        assert writer.degraded and writer.stats.outages == 1  # one failed try, then no hammering
        clock.now += 1.0
        assert write(6) == "spooled"  # retried (replay failed again), backoff doubles
        assert writer.stats.outages == 2
        outage.active = False
        clock.now += 0.5  # the database is back, but the backoff (1 s) has not run out
        assert write(7) == "spooled" and writer.stats.outages == 2
        clock.now += 1.0
        assert write(8) == "stored"  # replays 1..7 and the alarm first, in order
        assert not writer.degraded and not writer.spool.path.exists()
        assert write(3) == "duplicate"
        assert counts(repo) == (9, expected_defects(range(9)), 1)
        with repo.transaction() as s:
            assert s.scalars(select(Frame.seq).order_by(Frame.id)).all() == list(range(9))
        stats = writer.stats
        assert (stats.stored, stats.spooled, stats.replayed, stats.duplicates) == (2, 8, 8, 1)
    finally:
        writer.close()
        repo.dispose()


def test_spool_left_by_a_previous_run_is_flushed_at_start(sqlite_url: str, tmp_path: Path) -> None:
    spool = spooled_stream(tmp_path / "spool.jsonl", range(1, 11))
    upgrade(sqlite_url)
    repo = Repository(sqlite_url)
    try:
        writer = ResilientWriter(repo, spool.path)
        assert writer.degraded
        assert writer.flush() is True
        assert counts(repo) == (10, expected_defects(range(1, 11)), 2)
        assert writer.close() is True
    finally:
        repo.dispose()


def test_resilient_writer_does_not_spool_a_bad_record(sqlite_url: str, tmp_path: Path) -> None:
    upgrade(sqlite_url)
    repo = Repository(sqlite_url)
    writer = ResilientWriter(repo, tmp_path / "spool.jsonl")
    try:
        bad = DefectRecord(class_name="crazing", score=-0.1, xyxy=(0, 0, 5, 5))
        with pytest.raises(IntegrityError):
            writer.write_frame(result(1).frame, [bad])
        assert not writer.degraded and counts(repo) == (0, 0, 0)
    finally:
        writer.close()
        repo.dispose()


@pytest.mark.postgres
def test_writer_when_postgres_refuses_connections(pg_admin_url: str, pg_url: str, tmp_path: Path) -> None:
    """A real outage of the test database: connections cut and refused by the server, then allowed again."""
    name = make_url(pg_url).database
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    upgrade(pg_url)
    repo = Repository(pg_url)
    clock = FakeClock()
    writer = ResilientWriter(repo, tmp_path / "spool.jsonl", clock=clock)
    try:
        assert writer.write_frame(result(1).frame, result(1).defects) == "stored"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            conn.execute(  # the role's own sessions on it: the pooled connection of `repo` dies
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND usename = current_user AND pid <> pg_backend_pid()"
                ),
                {"db": name},
            )
        outcomes = [writer.write_frame(result(seq).frame, result(seq).defects) for seq in range(2, 7)]
        assert outcomes == ["spooled"] * 5 and writer.stats.outages == 1
        clock.now += 10
        assert writer.flush() is False and writer.stats.outages == 2  # still refused
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        clock.now += 10
        assert writer.write_frame(result(7).frame, result(7).defects) == "stored"
        assert counts(repo) == (7, expected_defects(range(1, 8)), 0)
        with repo.transaction() as s:
            assert processed_seqs(s, SOURCE) == set(range(1, 8))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        admin.dispose()
        writer.close()
        repo.dispose()


SPOOL_CHILD = """
import sys
from inspection.storage.records import DefectRecord, FrameRecord
from inspection.storage.spool import Spool, SpooledFrame
spool = Spool(sys.argv[1])
for seq in range(1_000_000):
    defects = tuple(DefectRecord(class_name="inclusion", score=0.7, xyxy=(i, 1, i + 5, 6)) for i in range(3))
    spool.append(SpooledFrame(FrameRecord(source="kill-spool", seq=seq), defects))
    print(seq, flush=True)
"""


def test_spool_killed_mid_append_replays_every_acknowledged_record(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    acknowledged = kill_after_acknowledged(SPOOL_CHILD, str(path), at_least=50)
    upgrade(sqlite_url)
    repo = Repository(sqlite_url)
    try:
        done = replay(Spool(path), repo)
        with repo.transaction() as s:
            seqs = sorted(processed_seqs(s, "kill-spool"))
        assert seqs == list(range(len(seqs))) and len(seqs) >= acknowledged + 1
        assert done.corrupt <= 1 and counts(repo) == (len(seqs), 3 * len(seqs), 0)
    finally:
        repo.dispose()
