"""The daemon keeps every frame, exactly once, through what a factory line does to it: kill -9, a database
that goes away, bad image files, a camera that drops out, SIGTERM, SIGHUP and more frames than it can score.

Each test is a real run (in-process or ``steel inspect`` in a subprocess) on real NEU-DET images.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from datasets.settings import REPO_ROOT
from inspection.daemon import Daemon
from inspection.sources.folder import folder_seq
from inspection.storage import spool as spool_module
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
    renamed_bundle,
    scratch_pg_database,
    source_frames,
    sqlite_db,
    strip_spec,
    wait_for,
)


def assert_ids_follow_seqs(rows: list[tuple]) -> None:
    """Rows were committed in stream order (ids are assigned at insert): replay kept the order."""
    seqs_by_id = [r[2] for r in sorted(rows)]
    assert seqs_by_id == sorted(seqs_by_id)


# ---------------------------------------------------------------------------------------- kill -9


def start_cli(*args: str, log: Path) -> subprocess.Popen:
    """``steel inspect`` in the background; its log goes to ``log``, its summary to the stdout pipe."""
    with open(log, "wb") as err:
        return subprocess.Popen(
            cli_command(*args), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err, text=True
        )


def cli_args(db: str, bundle: Path, source: str, out: Path) -> list[str]:
    return [
        "--once",
        "--json",
        "--db",
        db,
        "--model",
        str(bundle),
        "--source",
        source,
        "--set",
        f"output.dir={out}",
        "--set",
        "detector.threads=1",
    ]


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_stores_every_frame_once(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    db = sqlite_db(tmp_path)
    source = strip_spec(across=2, along=16, line_rate=600)  # ~5 s of strip
    expected = [f.seq for f in source_frames(source)]
    args = cli_args(db, model_bundle.path, source, tmp_path / "out")
    proc = start_cli(*args, log=tmp_path / "first.log")
    try:
        wait_for(lambda: frames_stored(db) >= 3, timeout=CLI_TIMEOUT_S, what="3 stored frames")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = frame_rows(db)
    assert 3 <= len(before) < len(expected), "the kill must land mid-stream"

    proc = start_cli(*args, log=tmp_path / "second.log")
    out, _ = proc.communicate(timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0, (tmp_path / "second.log").read_text()[-3000:]
    summary = json.loads(out)
    rows = frame_rows(db)
    assert_each_once(rows, source, expected)
    assert {r[3] for r in rows} == {"ok"}
    assert summary["frames"] == len(expected) - len(before)  # the restart skipped what was stored
    assert not (tmp_path / "out" / "spool.jsonl").exists()
    whole = daemon_config(tmp_path / "whole", source=strip_spec(across=2, along=16), bundle=model_bundle)
    finished(Daemon(whole, once=True))
    assert_same_defects(strip_defects(db), strip_defects(whole.db))  # none stored twice around the kill


def strip_defects(db: str) -> list[tuple[str, np.ndarray]]:
    return [
        (r[0], np.array(r[1:], float))
        for r in query(db, "SELECT class_name, sx1, sy1, sx2, sy2 FROM defects")
    ]


def assert_same_defects(got: list[tuple[str, np.ndarray]], want: list[tuple[str, np.ndarray]]) -> None:
    """The same defects (class and strip box, to float noise), each as often."""
    assert len(got) == len(want), f"{len(got)} defects stored, {len(want)} in one uninterrupted run"
    left = list(got)
    for cls, box in want:
        i = next((k for k, (c, b) in enumerate(left) if c == cls and np.abs(b - box).max() < 0.5), None)
        assert i is not None, f"{cls} at {box} missing"
        left.pop(i)


def test_stop_and_restart_stores_the_defects_of_one_uninterrupted_run(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    """The first frame after a restart overlaps the last stored one: defects there are not stored twice."""
    paced = strip_spec(across=2, along=10, line_rate=800)
    whole = daemon_config(tmp_path / "whole", source=strip_spec(across=2, along=10), bundle=model_bundle)
    finished(Daemon(whole, once=True))
    want = strip_defects(whole.db)
    assert want, "the model found nothing on the strip"

    cfg = daemon_config(tmp_path / "restarted", source=paced, bundle=model_bundle)
    first = Daemon(cfg, once=True)
    stopper = threading.Thread(
        target=lambda: (wait_for(lambda: frames_stored(cfg.db) >= 3, timeout=120), first.request_stop())
    )
    stopper.start()
    finished(first)
    stopper.join()
    stored_first = len(frame_rows(cfg.db))
    assert 3 <= stored_first < len(source_frames(paced))
    finished(Daemon(cfg, once=True))
    assert_each_once(frame_rows(cfg.db), first.source_name, [f.seq for f in source_frames(paced)])
    assert_same_defects(strip_defects(cfg.db), want)


# ------------------------------------------------------------------------------ database outage


def test_sqlite_outage_spools_then_replays_in_order(
    tmp_path: Path, model_bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = strip_spec(across=2, along=12, line_rate=1000)
    expected = [f.seq for f in source_frames(source)]
    cfg = daemon_config(tmp_path, source=source, bundle=model_bundle)
    daemon = Daemon(cfg, once=True)
    daemon.start()  # builds the sink the healer watches (construction does no I/O)
    record_frame = spool_module.record_frame
    outage = threading.Event()
    outage.set()
    refused = []

    def unreachable(*args, **kwargs):
        if outage.is_set():
            refused.append(args[1].seq)
            raise OperationalError("INSERT INTO frames", {}, sqlite3.OperationalError("disk I/O error"))
        return record_frame(*args, **kwargs)

    monkeypatch.setattr(spool_module, "record_frame", unreachable)  # how the writer stores a frame
    healer = threading.Thread(
        target=lambda: (wait_for(lambda: daemon.sink.tally.spooled >= 3, timeout=120), outage.clear())
    )
    healer.start()
    summary = finished(daemon)
    healer.join()
    assert refused, "the outage never reached the database"
    assert summary.tally.spooled >= 3 and daemon.writer.stats.replayed >= 3
    rows = frame_rows(cfg.db)
    assert_each_once(rows, daemon.source_name, expected)
    assert_ids_follow_seqs(rows)
    assert not daemon.writer.spool.path.exists() and not summary.spool_pending
    assert query(cfg.db, "SELECT COUNT(*) FROM defects")[0][0] == summary.tally.defects
    per_frame = query(
        cfg.db,
        "SELECT f.n_defects, COUNT(d.id) FROM frames f LEFT JOIN defects d "
        "ON d.frame_id = f.id GROUP BY f.id, f.n_defects",
    )
    assert all(n == count for n, count in per_frame), "a frame's defects were stored twice or lost"


def pg_control(action: str, url: str) -> None:
    """Stop or start the test PostgreSQL server as CI runs it (``.ci/run``), as the ``postgres`` user."""
    pg_ctl, data = os.environ["STEEL_TEST_PG_CTL"], os.environ["STEEL_TEST_PG_DATA"]
    if action == "stop":
        command = f"{pg_ctl} -D {data} -m fast -w stop"
    else:
        port = make_url(url).port or 5432
        options = f"-p {port} -k /tmp -c listen_addresses=127.0.0.1"
        command = f"{pg_ctl} -D {data} -o '{options}' -l {data}/server.log -w start"
    wrapper = (
        ["su", "postgres", "-s", "/bin/bash", "-c"]
        if os.geteuid() == 0
        else ["sudo", "-u", "postgres", "bash", "-c"]
    )
    subprocess.run([*wrapper, command], check=True, capture_output=True, timeout=60)


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_stopped_mid_run_spools_then_replays(tmp_path: Path, model_bundle: ModelBundle) -> None:
    missing = [
        v for v in ("STEEL_TEST_PG_URL", "STEEL_TEST_PG_CTL", "STEEL_TEST_PG_DATA") if not os.environ.get(v)
    ]
    if missing:
        pytest.skip(f"{', '.join(missing)} not set: no PostgreSQL server this test may stop and start")
    admin_url = os.environ["STEEL_TEST_PG_URL"]
    with scratch_pg_database(admin_url) as pg_url:
        source = strip_spec(across=2, along=16, line_rate=400)  # ~8 s of strip
        expected = [f.seq for f in source_frames(source)]
        cfg = daemon_config(tmp_path, source=source, bundle=model_bundle, db=pg_url)
        daemon = Daemon(cfg, once=True)
        events: list[str] = []

        def outage() -> None:
            wait_for(lambda: frames_stored(pg_url) >= 2, timeout=120, what="2 stored frames")
            pg_control("stop", admin_url)
            events.append("stopped")
            try:
                wait_for(lambda: daemon.sink.tally.spooled >= 2, timeout=60, what="2 spooled frames")
                events.append("spooled")
            finally:
                pg_control("start", admin_url)
                events.append("started")

        helper = threading.Thread(target=outage)
        helper.start()
        try:
            summary = finished(daemon)
        finally:
            helper.join()
        assert events == ["stopped", "spooled", "started"]
        if summary.spool_pending:  # the stream ended before the server was back: the next start replays
            assert daemon.writer.spool.pending()
            Daemon(cfg, once=True).writer.close()
        rows = frame_rows(pg_url)
        assert_each_once(rows, daemon.source_name, expected)
        assert_ids_follow_seqs(rows)
        assert summary.tally.spooled >= 2
        assert not daemon.writer.spool.path.exists()
        assert query(pg_url, "SELECT COUNT(*) FROM defects")[0][0] == summary.tally.defects


# ------------------------------------------------------------------------------ bad image files


def bad_image_folder(folder: Path) -> dict[str, str | None]:
    """Files in name order -> the reason they fail (None: a good image)."""
    folder.mkdir()
    first, second = neu_images(2)
    good = first.read_bytes()
    (folder / "a_good.jpg").write_bytes(good)
    (folder / "b_empty.jpg").write_bytes(b"")
    (folder / "c_truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "d_corrupt.png").write_bytes(np.random.default_rng(0).bytes(5000))
    assert cv2.imwrite(str(folder / "e_wrong_size.png"), np.full((50, 100), 128, np.uint8))
    assert cv2.imwrite(str(folder / "f_good.png"), cv2.imread(str(second)))
    return {
        "a_good.jpg": None,
        "b_empty.jpg": "empty file",
        "c_truncated.jpg": "truncated JPEG",
        "d_corrupt.png": "cannot decode",
        "e_wrong_size.png": "wrong size: 50x100",
        "f_good.png": None,
    }


def test_bad_images_become_failed_frames_and_the_daemon_goes_on(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    folder = tmp_path / "images"
    files = bad_image_folder(folder)
    cfg = daemon_config(tmp_path, source=f"folder:{folder}", bundle=model_bundle)
    daemon = Daemon(cfg, once=True, source_options={"expected_hw": (200, 200)})
    summary = finished(daemon)
    assert (summary.tally.frames, summary.tally.frames_failed) == (2, 4)
    rows = frame_rows(cfg.db)
    by_seq = {r[2]: r for r in rows}
    assert_each_once(rows, daemon.source_name, [folder_seq(name) for name in files])
    for name, reason in files.items():
        _, _, _, status, error, _ = by_seq[folder_seq(name)]
        if reason is None:
            assert (status, error) == ("ok", None), name
        else:
            assert status == "failed" and reason in error, (name, error)
    assert [by_seq[folder_seq(n)][3] for n in sorted(files)] == [r[3] for r in sorted(rows)]  # name order
    assert sorted(f["seq"] for f in summary.tally.failures) == sorted(
        folder_seq(name) for name, reason in files.items() if reason
    )

    again = finished(Daemon(cfg, once=True, source_options={"expected_hw": (200, 200)}))
    assert (again.tally.frames, again.tally.frames_failed) == (0, 0)  # each file once, across restarts
    assert len(frame_rows(cfg.db)) == len(files)


def test_odd_sized_images_are_tiled_and_scored(tmp_path: Path, model_bundle: ModelBundle) -> None:
    """Without a size check, tiny, thin and wide images and colour ones go through the pipeline."""
    folder = tmp_path / "odd"
    folder.mkdir()
    image = cv2.imread(str(neu_images(1)[0]), cv2.IMREAD_GRAYSCALE)
    shapes = {
        "a_1x1.png": image[:1, :1],
        "b_thin.png": image[:, :7],
        "c_wide.png": np.hstack([image] * 3)[:37],
    }
    for name, pixels in shapes.items():
        assert cv2.imwrite(str(folder / name), pixels)
    assert cv2.imwrite(str(folder / "d_tall.png"), np.vstack([image] * 2))
    cfg = daemon_config(tmp_path, source=f"folder:{folder}", bundle=model_bundle)
    summary = finished(Daemon(cfg, once=True))
    assert (summary.tally.frames, summary.tally.frames_failed) == (4, 0), summary.tally.failures
    rows = query(cfg.db, "SELECT width, height FROM frames WHERE status = 'ok' ORDER BY width, height")
    assert rows == [(1, 1), (7, 200), (200, 400), (600, 37)]


# ------------------------------------------------------------------------------ camera outage


class FakeCapture:
    """A camera connection that delivers ``frames`` and then loses the link (read fails)."""

    def __init__(self, frames: list[np.ndarray] | None) -> None:
        self.frames = list(frames or [])
        self.opened = frames is not None

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.opened and self.frames:
            return True, self.frames.pop(0)
        return False, None

    def grab(self) -> bool:
        return self.read()[0]

    def get(self, prop_id: int) -> float:
        return 0.0

    def release(self) -> None:
        self.opened = False


def test_camera_disconnect_reconnects_with_backoff_and_records_the_gap(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    colour = [cv2.imread(str(path)) for path in neu_images(6)]
    # connection 1: three frames; then two failed opens; connection 2: three frames; then the camera is gone
    script = [FakeCapture(colour[:3]), FakeCapture(None), FakeCapture(None), FakeCapture(colour[3:])]
    opened: list[int] = []
    waits: list[float] = []

    def factory(target: int) -> FakeCapture:
        opened.append(target)
        return script.pop(0) if script else FakeCapture(None)

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        time.sleep(0.01)
        return False

    options = {
        "capture_factory": factory,
        "wait": wait,
        "initial_backoff_s": 0.05,
        "backoff_factor": 2.0,
        "max_backoff_s": 1.0,
        "max_attempts": 4,
    }
    cfg = daemon_config(tmp_path, source="camera:0", bundle=model_bundle)
    daemon = Daemon(cfg, once=True, source_options=options)
    summary = finished(daemon)
    assert opened == [0] * 7  # 4 scripted opens, then 3 more failed ones until the 4th failure in a row
    assert waits == [0.05, 0.1, 0.2, 0.05, 0.1, 0.2]  # exponential, reset by the reconnect
    assert summary.tally.frames == 6 and summary.tally.gaps == 2
    assert Counter(r[3] for r in frame_rows(cfg.db)) == {"ok": 6}
    gaps = query(cfg.db, "SELECT source, reason, started_at, ended_at FROM source_gaps ORDER BY started_at")
    assert [g[0] for g in gaps] == ["camera:0", "camera:0"]
    assert "reconnected after 3 failed attempt(s)" in gaps[0][1]
    assert "gave up after 4 failed attempts" in gaps[1][1]
    assert all(g[2] < g[3] for g in gaps)


# ------------------------------------------------------------------------------ signals


@pytest.mark.slow
def test_sighup_swaps_the_model_and_sigterm_drains_and_exits_0(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(model_bundle.path, bundle)
    db = sqlite_db(tmp_path)
    source = strip_spec(across=2, along=24, line_rate=300)  # ~16 s of strip: stopped long before its end
    expected = [f.seq for f in source_frames(source)]
    proc = start_cli(*cli_args(db, bundle, source, tmp_path / "out"), log=tmp_path / "daemon.log")
    try:
        wait_for(lambda: frames_stored(db) >= 2, timeout=CLI_TIMEOUT_S, what="2 stored frames")
        new = renamed_bundle(model_bundle, tmp_path / "next", "hup")
        shutil.copy(new.path / "manifest.json", bundle / "manifest.json")  # a new bundle dropped in place
        proc.send_signal(signal.SIGHUP)
        versions = lambda: {r[5] for r in frame_rows(db)}  # noqa: E731
        wait_for(lambda: new.version in versions(), timeout=60, what="a frame scored by the new model")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    summary = json.loads(out)
    rows = frame_rows(db)
    stored = sorted(r[2] for r in rows)
    assert 3 <= len(stored) < len(expected)
    assert stored == expected[: len(stored)], "frames in flight at SIGTERM were lost"
    heights = {h for (h,) in query(db, "SELECT height FROM frames")}
    assert heights == {400}, "a frame cut short by the stop is stored under the full frame's key"
    assert summary["frames"] == len(rows) and {r[3] for r in rows} == {"ok"}
    by_seq = [r[5] for r in sorted(rows, key=lambda r: r[2])]
    k = by_seq.index(new.version)
    assert by_seq == [model_bundle.version] * k + [new.version] * (len(by_seq) - k)
    assert not (tmp_path / "out" / "spool.jsonl").exists()


# ------------------------------------------------------------------------------ backpressure


def test_drop_oldest_records_every_dropped_frame(tmp_path: Path, model_bundle: ModelBundle) -> None:
    folder = tmp_path / "burst"
    folder.mkdir()
    good = neu_images(1)[0].read_bytes()
    for i in range(17):  # good and bad files interleaved (failed frames are dropped too), a good one last
        (folder / f"{i:02d}.jpg").write_bytes(good if i % 2 == 0 else b"")
    cfg = daemon_config(
        tmp_path,
        source=f"folder:{folder}",
        bundle=model_bundle,
        queues__size=1,
        queues__policy="drop_oldest",
        folder__decode_attempts=1,  # a burst: empty files are not waited for
    )
    daemon = Daemon(cfg, once=True)
    daemon.start()  # loads the model (construction does no I/O)
    detect = daemon.detector.detect

    def slow_detect(tiles):
        time.sleep(0.3)
        return detect(tiles)

    daemon.detector.detect = slow_detect
    summary = finished(daemon)
    t = summary.tally
    assert t.frames_dropped > 0, "the burst should overflow a one-slot queue"
    assert t.frames + t.frames_failed + t.frames_dropped == 17
    assert t.frames >= 1  # the last frame has nothing behind it to push it out
    rows = frame_rows(cfg.db)
    assert_each_once(rows, daemon.source_name, [folder_seq(f"{i:02d}.jpg") for i in range(17)])
    statuses = Counter(r[3] for r in rows)
    assert statuses == Counter({"ok": t.frames, "failed": t.frames_failed, "dropped": t.frames_dropped})
    assert sum(q.dropped for q in daemon.queues.values()) >= 1
    assert all(r[4] == "dropped by backpressure (queue full)" for r in rows if r[3] == "dropped")
