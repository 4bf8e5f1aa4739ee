"""The daemon under the faults a plant produces (issue 11): a database file deleted or replaced, full disks,
clashing evidence names, camera files still being written, decompression bombs, bad configs, a database
down at start, two daemons killed -9 on one PostgreSQL. Real files, a real SQLite, a real PostgreSQL."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from inspection.daemon import Daemon
from inspection.inspect_cli import inspect_command
from inspection.sources.folder import FolderSource, folder_seq
from inspection.storage.db import upgrade
from inspection.storage.paths import raw_frame_path, safe_name, source_dir_name
from tests.inspection.daemon_fixtures import (
    CLI_TIMEOUT_S,
    ModelBundle,
    assert_each_once,
    cli_command,
    daemon_config,
    finished,
    frame_rows,
    frames_stored,
    neu_images,
    query,
    run_cli,
    scratch_pg_database,
    source_frames,
    sqlite_db,
    strip_spec,
    wait_for,
)


def sqlite_files(db_path: Path) -> list[Path]:
    return [db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")]


# ------------------------------------------------------------------------ 11.1 database file replaced


@pytest.mark.parametrize("fault", ["deleted", "replaced"])
def test_a_sqlite_file_deleted_or_replaced_mid_run_is_an_outage_and_no_frame_is_lost(
    tmp_path: Path, model_bundle: ModelBundle, fault: str
) -> None:
    """Before the fix, writes went on into the unlinked file: the new file stayed empty (or absent)."""
    source = strip_spec(across=2, along=12, line_rate=1000)
    expected = [f.seq for f in source_frames(source)]
    db_path = tmp_path / "inspection.db"
    cfg = daemon_config(tmp_path, source=source, bundle=model_bundle)
    daemon = Daemon(cfg, once=True)
    kept = tmp_path / "kept"  # hard links keep the unlinked file readable for the test
    kept.mkdir()

    def pull_the_file() -> None:
        wait_for(lambda: frames_stored(cfg.db) >= 3, timeout=120, what="3 stored frames")
        for path in sqlite_files(db_path):
            if path.exists():
                os.link(path, kept / path.name)
                path.unlink()
        if fault == "replaced":
            fresh = tmp_path / "fresh.db"
            upgrade(f"sqlite:///{fresh}")
            os.replace(fresh, db_path)

    saboteur = threading.Thread(target=pull_the_file)
    saboteur.start()
    summary = finished(daemon)
    saboteur.join()
    before = frame_rows(f"sqlite:///{kept / 'inspection.db'}")
    after = frame_rows(cfg.db)
    assert after, "nothing reached the database at the path after the file was pulled"
    assert daemon.link.reopened == 1 and daemon.writer.stats.outages >= 1
    assert_each_once(before + after, daemon.source_name, expected)
    assert not summary.spool_pending and not daemon.writer.spool.path.exists()
    assert summary.tally.frames == len(expected)


# ------------------------------------------------------------------------------- 11.2 full output dir


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs filled to the last block (a real ENOSPC), unmounted afterwards."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        (mount / "out").mkdir()
        fill(mount / "filler.bin")
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(path: Path) -> None:
    """Write zeros until the file system refuses even one more byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_full_output_disk_stores_every_frame_with_its_evidence_marked_missing(
    tmp_path: Path, model_bundle: ModelBundle, full_disk: Path
) -> None:
    """Before the fix the crop write raised in the sink: the frame got no row and frames_failed stayed 0."""
    source = strip_spec(across=2, along=6)
    expected = [f.seq for f in source_frames(source)]
    cfg = daemon_config(
        tmp_path,
        source=source,
        bundle=model_bundle,
        output__dir=str(full_disk / "out"),
        output__save_frames="all",
    )
    daemon = Daemon(cfg, once=True)
    summary = finished(daemon).to_dict()
    rows = frame_rows(cfg.db)
    assert_each_once(rows, daemon.source_name, expected)
    assert {r[3] for r in rows} == {"ok"}
    missing = [r for r in rows if r[4] is not None]
    assert missing and all(r[4].startswith("evidence not saved") and "bytes free" in r[4] for r in missing)
    assert summary["frames"] == len(expected) and summary["frames_evidence_missing"] == len(missing)
    assert summary["frames_failed"] == 0
    evidence = query(cfg.db, "SELECT image_path FROM frames UNION ALL SELECT crop_path FROM defects")
    assert all(Path(path).is_file() for (path,) in evidence if path is not None), "a row names a lost file"
    assert sum(path is None for (path,) in evidence) >= len(missing)
    assert not list((full_disk / "out").rglob(".*.tmp*")), "a half-written temporary file was left"


# ---------------------------------------------------------------- 11.3 database and spool on a full disk


def test_database_and_spool_on_one_full_disk_hold_then_stop_the_line_and_lose_nothing(
    tmp_path: Path, model_bundle: ModelBundle, full_disk: Path
) -> None:
    """Before the fix the spool append raised ENOSPC in the sink and those frames were gone."""
    for filler in full_disk.glob("*.bin"):
        filler.unlink()  # room to create and migrate the database first
    source = strip_spec(across=2, along=8)
    expected = [f.seq for f in source_frames(source)]
    db = f"sqlite:///{full_disk / 'inspection.db'}"
    cfg = daemon_config(
        tmp_path,
        source=source,
        bundle=model_bundle,
        db=db,
        output__dir=str(full_disk / "out"),
        output__hold_max_records=3,
        alarms=None,
    )
    daemon = Daemon(cfg, once=True)
    fill(full_disk / "filler.bin")
    seen: dict[str, object] = {}

    def free_space_once_the_line_stops() -> None:
        wait_for(lambda: daemon.writer.blocked, timeout=120, what="the writer to stop the line")
        seen["health"] = daemon.health()
        seen["stored_while_full"] = frames_stored(db)
        (full_disk / "filler.bin").unlink()

    helper = threading.Thread(target=free_space_once_the_line_stops)
    helper.start()
    summary = finished(daemon).to_dict()
    helper.join()
    health = seen["health"]
    assert health["status"] != "ok" and health["storage_full"] is True  # /health answers 503
    assert seen["stored_while_full"] == 0
    assert summary["held_in_memory"] >= 3 and summary["not_stored"] == 0
    assert daemon.writer.stats.blocked >= 1
    assert_each_once(frame_rows(db), daemon.source_name, expected)
    assert summary["frames"] == len(expected) and not summary["spool_pending"]


# ---------------------------------------------------------------------- 11.4 evidence names per source


def test_two_folder_sources_with_a_long_shared_prefix_keep_their_own_crops_and_frames(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    """Before the fix both sources wrote ``frames/<first 80 characters>/<seq>.jpg``: the second run overwrote
    the first one's evidence (same file names give the same seq)."""
    images = neu_images(4)
    common = tmp_path / ("camera_" + "x" * 90)
    folders = [common / "top", common / "bottom"]
    for folder, picks in zip(folders, (images[:2], images[2:]), strict=True):
        folder.mkdir(parents=True)
        for k, image in enumerate(picks):
            shutil.copy(image, folder / f"frame{k}.jpg")  # the same names in both folders
    names = []
    for folder in folders:
        cfg = daemon_config(
            tmp_path, source=f"folder:{folder}", bundle=model_bundle, output__save_frames="all"
        )
        names.append(finished(Daemon(cfg, once=True)).source)
    rows = query(cfg.db, "SELECT source, seq, image_path FROM frames ORDER BY id")
    assert len(rows) == 4 and len({seq for _, seq, _ in rows}) == 2  # same seqs on both sources
    paths = [path for _, _, path in rows]
    assert None not in paths and len(set(paths)) == 4, "two frames share one evidence file"
    crops = query(cfg.db, "SELECT crop_path FROM defects")
    assert len({c for (c,) in crops}) == len(crops)
    for source, seq, path in rows:  # each file still shows its own frame
        folder = Path(source.removeprefix("folder:"))
        name = next(p.name for p in folder.iterdir() if folder_seq(p.name) == seq)
        raw = cv2.imread(str(raw_frame_path(cfg.output.dir, source, seq)), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(raw, cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)), path


def test_evidence_folder_names_differ_where_safe_names_collide() -> None:
    pairs = [("folder:/plant/a/b", "folder:/plant/a_b"), ("x" * 100 + "1", "x" * 100 + "2")]
    for first, second in pairs:
        assert safe_name(first) == safe_name(second)
        assert source_dir_name(first) != source_dir_name(second)
        assert raw_frame_path("out", first, 7) != raw_frame_path("out", second, 7)


# ------------------------------------------------------------------ 11.5 files still being written


def write_slowly(path: Path, data: bytes, pattern: str) -> None:
    """How real cameras write: a pause longer than a poll between two chunks, or an empty file first."""
    if pattern == "pause between chunks":
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 3])
            fh.flush()
            time.sleep(2.5)
            fh.write(data[len(data) // 3 :])
    else:
        path.write_bytes(b"")
        time.sleep(2.5)
        path.write_bytes(data)


@pytest.mark.parametrize("pattern", ["pause between chunks", "empty file filled later"])
def test_a_file_still_being_written_is_read_once_complete_not_stored_as_failed(
    tmp_path: Path, model_bundle: ModelBundle, pattern: str
) -> None:
    """Before the fix the watcher took the file after two equal scans and stored it as failed for good."""
    folder = tmp_path / "camera"
    folder.mkdir()
    image = neu_images(1)[0]
    cfg = daemon_config(tmp_path, source=f"folder:{folder}", bundle=model_bundle)
    daemon = Daemon(cfg, once=False)
    writer = threading.Thread(target=write_slowly, args=(folder / "f1.jpg", image.read_bytes(), pattern))

    def stop_once_stored() -> None:
        wait_for(lambda: frames_stored(cfg.db) >= 1, timeout=120, what="the frame")
        daemon.request_stop()

    stopper = threading.Thread(target=stop_once_stored)
    writer.start()
    stopper.start()
    summary = finished(daemon)
    writer.join()
    stopper.join()
    rows = frame_rows(cfg.db)
    assert [(r[2], r[3], r[4]) for r in rows] == [(folder_seq("f1.jpg"), "ok", None)]
    assert summary.tally.frames_failed == 0


def test_a_moderately_large_frame_names_its_size_when_refused(tmp_path: Path) -> None:
    huge_png(tmp_path / "big.png", 3000, 2000)
    (event,) = FolderSource(tmp_path, max_pixels=5_000_000)
    assert event.reason == "too many pixels: 3000x2000 px in the header, limit 5000000 (not decoded)"


def test_a_file_that_never_decodes_is_failed_after_its_attempts(tmp_path: Path) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(neu_images(1)[0].read_bytes()[:3000])
    events = list(FolderSource(folder, settle_s=0.2, decode_attempts=3, poll_s=0.1))
    assert [e.reason for e in events] == ["truncated JPEG (no end-of-image marker) (after 3 attempts)"]


# -------------------------------------------------------------------------- 11.6 decompression bombs


def huge_png(path: Path, width: int, height: int) -> None:
    """A black ``width`` x ``height`` gray PNG, written row by row (never held in memory): 20000 x 20000
    is ~390 KB on disk and 400 MB decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_from_its_header_and_the_line_goes_on(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    """Before the fix the 20000x20000 PNG was decoded (2.9 GB, 164 s measured in the issue)."""
    folder = tmp_path / "camera"
    folder.mkdir()
    huge_png(folder / "a_bomb.png", 20000, 20000)
    shutil.copy(neu_images(1)[0], folder / "b_good.jpg")
    assert (folder / "a_bomb.png").stat().st_size < 1_000_000
    cfg = daemon_config(tmp_path, source=f"folder:{folder}", bundle=model_bundle, folder__settle_s=0)
    summary = finished(Daemon(cfg, once=True))
    by_seq = {r[2]: r for r in frame_rows(cfg.db)}
    bomb = by_seq[folder_seq("a_bomb.png")]
    assert bomb[3] == "failed" and bomb[4].startswith("too many pixels: 400000000 px in the header")
    assert bomb[4].endswith("limit 50000000 (not decoded)")
    assert by_seq[folder_seq("b_good.jpg")][3] == "ok"
    assert (summary.tally.frames, summary.tally.frames_failed) == (1, 1)


# ------------------------------------------------------------------------- 11.7 config validation

BAD_SETTINGS = [  # (--set, the key path the error must name); each passed --validate-config before the fix
    ("mm_per_line=.inf", "mm_per_line"),
    ("mm_per_px=1e400", "mm_per_px"),
    ("detector.batch_wait_ms=.inf", "detector.batch_wait_ms"),
    ("detector.batch_wait_ms=.nan", "detector.batch_wait_ms"),
    ("alarms.reject.min_length_m=.inf", "reject.min_length_m"),
    ("line=", "line"),
    ("coil=' '", "coil"),
    ("source=", "source"),
    ("source=folder:", "source"),
    ("db=notaurl", "db"),
    ("db=mysql://h/d", "db"),
    ("source=folder:/no/such/folder", "source: folder /no/such/folder does not exist"),
    ("detector.model=/no/such/bundle", "detector.model: /no/such/bundle is not a model bundle"),
]


def validate(tmp_path: Path, *settings: str) -> Result:
    """``steel inspect --validate-config`` in this process (the CLI itself runs once, below)."""
    args = [
        "--validate-config",
        "--set",
        f"output.dir={tmp_path / 'out'}",
        "--set",
        f"db={sqlite_db(tmp_path)}",
    ]
    for setting in settings:
        args += ["--set", setting]
    app = typer.Typer()
    app.command()(inspect_command)
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(("setting", "names"), BAD_SETTINGS)
def test_validate_config_refuses_what_the_run_would_trip_on(tmp_path: Path, setting: str, names: str) -> None:
    done = validate(tmp_path, setting)
    assert done.exit_code == 2 and done.exception is None or isinstance(done.exception, SystemExit), (
        done.output
    )
    assert names in done.stderr and "Traceback" not in done.stderr


def test_validate_config_accepts_the_shipped_config_and_a_real_folder(tmp_path: Path) -> None:
    (tmp_path / "camera").mkdir()
    done = validate(tmp_path, f"source=folder:{tmp_path / 'camera'}")
    assert done.exit_code == 0 and done.stdout.strip().endswith(": ok"), done.stderr
    refused = run_cli("--validate-config", "--set", "mm_per_line=.inf", timeout=120)  # the real command
    assert refused.returncode == 2 and "mm_per_line" in refused.stderr and "Traceback" not in refused.stderr


# --------------------------------------------------------------------------- 11.8 database down at start


@pytest.mark.postgres
def test_a_database_down_at_start_spools_without_a_traceback_and_the_next_start_replays(
    tmp_path: Path, model_bundle: ModelBundle, pg_admin_url: str
) -> None:
    """Before the fix the first run died in the migration with a traceback and exit 1."""
    source = strip_spec(across=2, along=6)
    expected = [f.seq for f in source_frames(source)]
    with scratch_pg_database(pg_admin_url) as pg_url:
        down = make_url(pg_url).set(port=1).render_as_string(hide_password=False)  # nothing listens there
        args = ["--once", "--json", "--model", str(model_bundle.path), "--source", source]
        args += ["--set", f"output.dir={tmp_path / 'out'}", "--set", "detector.threads=1"]
        first = run_cli(*args, "--db", down)
        assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr[-3000:]
        assert "database unreachable at start" in first.stderr
        summary = json.loads(first.stdout)
        assert summary["spooled"] >= summary["frames"] == len(expected) and summary["spool_pending"]

        second = run_cli(*args, "--db", pg_url)  # the same spool, the database back
        assert second.returncode == 0, second.stderr[-3000:]
        assert json.loads(second.stdout)["frames"] == 0  # the replayed frames count as already there
        assert_each_once(frame_rows(pg_url), source, expected)
        assert not (tmp_path / "out" / "spool.jsonl").exists()
        assert query(pg_url, "SELECT version FROM model_versions") == [(model_bundle.version,)]


# ------------------------------------------------------------- scale-out: two daemons on one PostgreSQL


def stored_of(db: str, source: str) -> int:
    try:
        return int(query(db, "SELECT COUNT(*) FROM frames WHERE source = :s", s=source)[0][0])
    except Exception:  # not migrated yet
        return 0


@pytest.mark.postgres
@pytest.mark.slow
def test_two_daemons_on_one_postgres_each_killed_9_and_restarted_store_every_frame_once(
    tmp_path: Path, model_bundle: ModelBundle, pg_admin_url: str
) -> None:
    """Two cameras (two surfaces of one line) write one PostgreSQL database at the same time; each daemon
    is killed -9 mid-run and started again while the other keeps writing."""
    sources = [strip_spec(across=2, along=14, line_rate=500, coil=f"c{k}", seed=k) for k in (1, 2)]
    expected = {source: [f.seq for f in source_frames(source)] for source in sources}
    with scratch_pg_database(pg_admin_url) as db:

        def args(k: int) -> list[str]:
            return [
                "--once", "--json", "--db", db, "--model", str(model_bundle.path), "--source", sources[k],
                "--set", f"output.dir={tmp_path / f'out{k}'}", "--set", "detector.threads=1",
            ]  # fmt: skip

        logs = [open(tmp_path / f"daemon{k}.log", "w") for k in (0, 1)]  # noqa: SIM115 - closed below

        def start(k: int) -> subprocess.Popen:
            return subprocess.Popen(cli_command(*args(k)), stdout=subprocess.PIPE, stderr=logs[k], text=True)

        procs = [start(0), start(1)]
        try:
            killed_at = []
            for k in (0, 1):  # kill each once it has stored a few frames, restart it at once
                wait_for(
                    lambda k=k: stored_of(db, sources[k]) >= 3, timeout=CLI_TIMEOUT_S, what=f"daemon {k}"
                )
                procs[k].send_signal(signal.SIGKILL)
                procs[k].wait(timeout=30)
                procs[k].stdout.close()
                killed_at.append(stored_of(db, sources[k]))
                procs[k] = start(k)
            outputs = [proc.communicate(timeout=CLI_TIMEOUT_S)[0] for proc in procs]
        finally:
            for proc in procs:
                proc.kill()
            for log in logs:
                log.close()
        for k in (0, 1):
            assert procs[k].returncode == 0, (tmp_path / f"daemon{k}.log").read_text()[-3000:]
            assert 3 <= killed_at[k] < len(expected[sources[k]]), "the kill must land mid-stream"
            assert json.loads(outputs[k])["frames"] == len(expected[sources[k]]) - killed_at[k]
        rows = frame_rows(db)
        for source in sources:
            assert_each_once([r for r in rows if r[1] == source], source, expected[source])
        assert len(rows) == sum(len(seqs) for seqs in expected.values())
        assert {r[3] for r in rows} == {"ok"}
        per_frame = query(
            db,
            "SELECT f.n_defects, COUNT(d.id) FROM frames f LEFT JOIN defects d ON d.frame_id = f.id "
            "GROUP BY f.id, f.n_defects",
        )
        assert all(n == count for n, count in per_frame), "a frame's defects were stored twice or lost"
        assert query(db, "SELECT COUNT(*) FROM lines") == [(1,)]  # both on one line: no duplicate rows
        assert query(db, "SELECT COUNT(*) FROM model_versions") == [(1,)]


# ------------------------------------------------------------------------------------ 10.3 wiring


def test_constructing_a_daemon_touches_no_file_and_start_does_the_start_up_work(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    """Before the fix the constructor created folders, migrated the database and loaded the model."""
    cfg = daemon_config(
        tmp_path / "run",
        source=strip_spec(across=1, along=2),
        bundle=model_bundle,
        db=sqlite_db(tmp_path / "db"),
    )
    daemon = Daemon(cfg, once=True)
    assert not (tmp_path / "run").exists() and not (tmp_path / "db").exists()
    assert daemon.detector is None and daemon.health() == {"status": "starting"}
    daemon.start()
    assert (tmp_path / "db" / "inspection.db").is_file() and (tmp_path / "run" / "out").is_dir()
    assert daemon.detector is not None and daemon.health()["model_version"] == model_bundle.version
    assert [type(s).__name__ for s in daemon.stages][-1] == "SinkStage"
