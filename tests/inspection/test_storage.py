"""Storage on real SQLite files and (with STEEL_TEST_PG_URL) a real PostgreSQL server: migrations, schema,
atomic and idempotent frame writes, alarms and gaps (the registry and reviews: test_storage_registry.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Float, MetaData, func, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from datasets.settings import REPO_ROOT
from inspection.storage.db import current_revision, head_revision, make_engine, upgrade
from inspection.storage.frames import (
    has_frame,
    max_seq,
    processed_seqs,
    record_alarm,
    record_frame,
    record_gap,
)
from inspection.storage.model_registry import register_model_version
from inspection.storage.records import AlarmRecord, DefectRecord, FrameRecord, GapRecord
from inspection.storage.repository import Repository
from inspection.storage.reviews import add_review
from inspection.storage.schema import Alarm, Base, Coil, Defect, Frame, Gap, Line, ModelVersion, Review
from tests.inspection.kill_child import kill_after_acknowledged
from tests.inspection.storage_records import T0, count, defect, frame, manifest


def test_migrations_reach_head_and_rerun(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(db_url)
        # the newest revision: 0001 -> 0003 (coil grades) -> 0004 (activation history) -> 0005 (surface,
        # trend indexes) -> 0006 (anomaly map crops)
        assert current_revision(engine) == head_revision() == "0006"
        upgrade(engine)  # again, through an engine: nothing to do, nothing breaks
        assert current_revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()


def _diff(engine, metadata: MetaData) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(ctx, metadata)


def test_two_threads_migrating_two_databases_at_once_both_reach_head(tmp_path: Path) -> None:
    """Alembic's ``context`` is a process global: before the lock, a second thread's upgrade removed the
    first one's proxy (KeyError 'script') or ran its migrations on the other's connection (index already
    exists). The daemon's link reopens and migrates a replaced database on the writer's thread while another
    thread of the process may be migrating too."""
    urls = [f"sqlite:///{tmp_path / f'db{i}.sqlite'}" for i in range(6)]
    errors: list[BaseException] = []

    def migrate(url: str) -> None:
        try:
            upgrade(url)
        except BaseException as exc:  # collected: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(url,)) for url in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [current_revision(url) for url in urls] == [head_revision()] * len(urls)


def test_migrated_schema_equals_orm(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        assert _diff(engine, Base.metadata) == []
        # The comparison does see differences: the ORM plus one column is not the migrated schema.
        changed = MetaData(naming_convention=Base.metadata.naming_convention)
        for table in Base.metadata.tables.values():
            table.to_metadata(changed)
        changed.tables["defects"].append_column(Column("severity", Float))
        diff = _diff(engine, changed)
        assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "defects", "severity")]
    finally:
        engine.dispose()


def test_engine_settings(db_url: str) -> None:
    engine = make_engine(db_url)  # a SQLite file's parent folder does not exist yet: it is created
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
                settings = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in names}
                expected = {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 30000}
            else:
                settings = {"timezone": conn.exec_driver_sql("SHOW timezone").scalar()}
                expected = {"timezone": "UTC"}
        assert settings == expected
    finally:
        engine.dispose()


def test_read_only_engine_refuses_writes(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url, read_only=True)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Frame)) == 0
            with pytest.raises(DBAPIError, match="read-?only"):
                conn.execute(text("INSERT INTO lines (name, created_at) VALUES ('x', '2026-01-01 00:00:00')"))
    finally:
        engine.dispose()


def test_schema_imports_without_torch() -> None:
    code = (
        "import sys, inspection.storage.schema, inspection.storage.db, inspection.storage.repository, "
        "inspection.storage.spool, inspection.storage.reviews, inspection.storage.model_registry; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_frame_and_defects_commit_together(repo: Repository) -> None:
    bad = DefectRecord(class_name=None, score=0.5, xyxy=(0, 0, 1, 1))  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises(IntegrityError), repo.transaction() as s:
        record_frame(s, frame(1), [defect(1), bad, defect(3)])
    assert (count(repo, Frame), count(repo, Defect)) == (0, 0)
    with repo.transaction() as s:
        assert max_seq(s, "strip-sim:test") is None
    # The key is still free: the same frame with good defects is stored, once, with all of them.
    with repo.transaction() as s:
        assert record_frame(s, frame(1), [defect(1), defect(2), defect(3)]) is True
    assert (count(repo, Frame), count(repo, Defect)) == (1, 3)


def test_repeated_frame_key_is_stored_once(repo: Repository) -> None:
    with repo.transaction() as s:
        assert record_frame(s, frame(7), [defect(1), defect(2)]) is True
    with repo.transaction() as s:
        assert record_frame(s, frame(7), [defect(1), defect(2)]) is False
    with repo.transaction() as s:
        assert record_frame(s, frame(7, status="failed", error="replayed differently"), []) is False
    with repo.transaction() as s:
        assert record_frame(s, frame(7, source="folder:/other"), [defect(1)]) is True  # another source
    with repo.transaction() as s:
        assert record_frame(s, frame(8), []) is True  # zero defects: defect-free steel
    assert (count(repo, Frame), count(repo, Defect)) == (3, 3)
    with repo.transaction() as s:
        assert processed_seqs(s, "strip-sim:test") == {7, 8}
        assert processed_seqs(s, "strip-sim:test", min_seq=8) == {8}
        assert max_seq(s, "strip-sim:test") == 8
        assert has_frame(s, "folder:/other", 7) and not has_frame(s, "folder:/other", 8)


def test_stored_values_round_trip(repo: Repository) -> None:
    paris = timezone(timedelta(hours=1))
    captured = datetime(2026, 3, 1, 7, 0, 0, 5, tzinfo=paris)  # stored and read back as 06:00:00.000005 UTC
    with repo.transaction() as s:
        assert record_frame(s, frame(1, captured_at=captured, latency_ms=12.5), [defect(4)])
    with repo.transaction() as s:
        assert record_frame(s, frame(2, status="failed", error="truncated JPEG", coil=None, line=None), [])
    with repo.transaction() as s:
        ok, failed = s.scalars(select(Frame).order_by(Frame.seq)).all()
        d = s.scalars(select(Defect)).one()
        line = s.scalars(select(Line)).one()
        coil = s.scalars(select(Coil)).one()
        model = s.scalars(select(ModelVersion)).one()
    assert ok.captured_at == captured and ok.captured_at.tzinfo == UTC
    assert ok.processed_at == T0 + timedelta(seconds=1)
    assert (ok.status, ok.n_defects, ok.latency_ms) == ("ok", 1, 12.5)
    assert (ok.line_id, ok.coil_id) == (line.id, coil.id)
    assert (failed.status, failed.error, failed.n_defects) == ("failed", "truncated JPEG", 0)
    assert (failed.line_id, failed.coil_id) == (None, None)
    assert (line.name, coil.code, coil.line_id) == ("L1", "C-001", line.id)
    # An unregistered version gets a placeholder row that registering the bundle fills in later.
    assert (model.version, model.manifest) == ("v1", {})
    assert ok.model_version_id == d.model_version_id == model.id
    with repo.transaction() as s:
        assert register_model_version(s, manifest("v1"), "models/v1") == model.id
    assert (d.frame_id, d.line_id, d.coil_id) == (ok.id, line.id, coil.id)
    assert (d.class_name, d.score) == ("scratches", 0.9)
    assert (d.x1, d.y1, d.x2, d.y2, d.sx1, d.sy1, d.sx2, d.sy2) == (40, 20, 90, 80, 40, 620, 90, 680)
    assert (d.position_m, d.cross_m, d.length_m, d.width_m) == (0.31, 0.02, 0.03, 0.025)
    assert (d.track_id, d.first_frame_seq, d.last_frame_seq, d.crop_path) == ("4", 1, 1, "crops/4.png")
    assert d.created_at == ok.processed_at  # defects are dated by their frame unless told otherwise


def test_records_take_numpy_scalars_and_check_values() -> None:
    np = pytest.importorskip("numpy")
    xyxy = np.array([1, 2, 3, 4], np.float32)
    d = DefectRecord(
        class_name="crazing",
        score=np.float32(0.75),
        xyxy=xyxy,
        track_id=np.int64(12),
        first_frame_seq=np.int64(3),
    )
    assert (type(d.score), d.xyxy, d.track_id) == (float, (1.0, 2.0, 3.0, 4.0), "12")
    assert type(d.first_frame_seq) is int
    assert DefectRecord.from_dict(d.to_dict()) == d
    f = FrameRecord(source="s", seq=np.int64(5), width=np.int32(10), processed_at=T0)
    assert FrameRecord.from_dict(f.to_dict()) == f and type(f.seq) is int
    with pytest.raises(ValueError, match="status"):
        FrameRecord(source="s", seq=1, status="lost")
    with pytest.raises(ValueError, match="without its line"):
        FrameRecord(source="s", seq=1, coil="C1")


def test_alarms_are_idempotent_and_linked(repo: Repository) -> None:
    with repo.transaction() as s:
        record_frame(s, frame(1), [defect(1), defect(2)])
    payload = {"ok": False, "defects": 2}
    alarm = AlarmRecord(
        source="strip-sim:test", seq=1, sink="plc", kind="reject", sent_at=T0, payload=payload, track_id=2
    )
    with repo.transaction() as s:
        assert record_alarm(s, alarm) is True
    with repo.transaction() as s:
        assert record_alarm(s, alarm) is False  # the same event, replayed
    other_sink = AlarmRecord(source="strip-sim:test", seq=1, sink="log", kind="reject", sent_at=T0)
    with repo.transaction() as s:
        assert record_alarm(s, other_sink) is True
    with repo.transaction() as s:
        plc = s.scalars(select(Alarm).where(Alarm.sink == "plc")).one()
        linked = s.get(Defect, plc.defect_id)
    assert (plc.payload, plc.status, plc.sent_at, linked.track_id) == (payload, "sent", T0, "2")
    with pytest.raises(LookupError, match="not stored"), repo.transaction() as s:
        record_alarm(s, AlarmRecord(source="strip-sim:test", seq=99, sink="plc", kind="reject"))


def test_tracks_seen_again_move_last_frame_seq_forward(repo: Repository) -> None:
    seen_once = dict(track_id="t1", first_frame_seq=1, last_frame_seq=1)
    with repo.transaction() as s:
        record_frame(s, frame(1), [defect(1, **seen_once)])
    with repo.transaction() as s:
        record_frame(s, frame(1, source="camera:2"), [defect(1, **seen_once)])  # same track id, other source
    with repo.transaction() as s:
        assert record_frame(s, frame(2), [], seen_again=["t1"]) is True
    with repo.transaction() as s:
        assert record_frame(s, frame(3), [], seen_again=["t1", "unknown"]) is True
    with repo.transaction() as s:
        assert record_frame(s, frame(0), [], seen_again=["t1"]) is True  # older frame stored late: no effect
    with repo.transaction() as s:
        assert record_frame(s, frame(5), [], seen_again=["t1"]) is True
    with repo.transaction() as s:
        assert record_frame(s, frame(5), [], seen_again=["t1"]) is False  # a replay changes nothing
    with repo.transaction() as s:
        rows = s.execute(
            select(Frame.source, Defect.first_frame_seq, Defect.last_frame_seq).join(Defect.frame)
        )
        assert sorted(tuple(r) for r in rows) == [("camera:2", 1, 1), ("strip-sim:test", 1, 5)]


def test_gaps_are_stored_once(repo: Repository) -> None:
    gap = GapRecord(
        source="camera:0",
        started_at=T0,
        ended_at=T0 + timedelta(seconds=12),
        reason="reconnected",
        line="L1",
        first_missing_line=4096,
        missing_lines=-3,
    )
    with repo.transaction() as s:
        assert record_gap(s, gap) is True
    with repo.transaction() as s:
        assert record_gap(s, gap) is False
    with repo.transaction() as s:
        row = s.scalars(select(Gap)).one()
        line_id = s.scalar(select(Line.id).where(Line.name == "L1"))
    assert (row.source, row.started_at, row.ended_at, row.reason) == (
        "camera:0",
        T0,
        gap.ended_at,
        "reconnected",
    )
    assert (row.line_id, row.first_missing_line, row.missing_lines) == (line_id, 4096, -3)


def test_deleting_a_frame_cascades(repo: Repository) -> None:
    with repo.transaction() as s:
        record_frame(s, frame(1), [defect(1), defect(2)])
    with repo.transaction() as s:
        record_frame(s, frame(2), [defect(3)])
    with repo.transaction() as s:
        record_alarm(s, AlarmRecord(source="strip-sim:test", seq=1, sink="log", kind="reject", track_id=1))
    with repo.transaction() as s:
        first = s.scalar(select(Defect.id).order_by(Defect.id))
    with repo.transaction() as s:
        add_review(s, first, reviewer="ana", verdict="confirmed")
    with repo.transaction() as s:
        s.execute(text("DELETE FROM frames WHERE seq = 1"))
    assert [count(repo, t) for t in (Frame, Defect, Review, Alarm)] == [1, 1, 0, 0]


def test_an_open_reader_does_not_block_the_writer(repo: Repository) -> None:
    with repo.transaction() as s:
        record_frame(s, frame(1), [defect(1)])
    reader = make_engine(repo.engine.url)
    try:
        with reader.connect() as conn, conn.begin():  # e.g. the dashboard in the middle of a page
            assert conn.scalar(select(func.count()).select_from(Frame)) == 1
            with repo.transaction() as s:
                assert record_frame(s, frame(2), [defect(2)]) is True  # WAL on SQLite, MVCC on PostgreSQL
        assert count(repo, Frame) == 2
    finally:
        reader.dispose()


WRITER_CHILD = """
import sys
from datetime import UTC, datetime
from inspection.storage.frames import record_frame
from inspection.storage.records import DefectRecord, FrameRecord
from inspection.storage.repository import Repository
repo = Repository(sys.argv[1])
for seq in range(100_000):
    defects = [DefectRecord(class_name="patches", score=0.5, xyxy=(i, 0, i + 9, 9)) for i in range(5)]
    with repo.transaction() as s:
        record_frame(s, FrameRecord(source="kill-test", seq=seq, line="L1", coil="C1"), defects)
    print(seq, flush=True)
"""


def test_kill_9_mid_write_leaves_whole_frames_only(db_url: str) -> None:
    """SIGKILL a writer in full flight: every frame it acknowledged is there, none is half-written."""
    upgrade(db_url)
    acknowledged = kill_after_acknowledged(WRITER_CHILD, db_url, at_least=30)
    repo = Repository(db_url)
    try:
        with repo.transaction() as s:
            seqs = s.scalars(select(Frame.seq).where(Frame.source == "kill-test").order_by(Frame.seq)).all()
            per_frame = s.execute(
                select(Frame.n_defects, func.count(Defect.id)).outerjoin(Defect).group_by(Frame.id)
            ).all()
        assert seqs == list(range(len(seqs))) and len(seqs) >= acknowledged + 1
        assert {tuple(row) for row in per_frame} == {(5, 5)}
        with repo.transaction() as s:
            assert record_frame(s, FrameRecord(source="kill-test", seq=seqs[-1], line="L1")) is False
        with repo.transaction() as s:
            assert record_frame(s, FrameRecord(source="kill-test", seq=seqs[-1] + 1, line="L1")) is True
    finally:
        repo.dispose()
