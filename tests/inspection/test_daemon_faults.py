"""The daemon under the faults a plant produces (issue 11): a database file deleted or replaced, full disks,
clashing evidence names, camera files still being written, decompression bombs, bad configs, a database
down at start, two daemons killed -9 on one PostgreSQL. Real files, a real SQLite, a real PostgreSQL."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from inspection.daemon import Daemon, RunSummary
from inspection.storage.db import upgrade
from tests.inspection.daemon_fixtures import (  # noqa: F401 - fixtures
    ModelBundle,
    assert_each_once,
    daemon_config,
    frame_rows,
    frames_stored,
    model_bundle_fixture,
    source_frames,
    strip_spec,
    wait_for,
)


def finished(daemon: Daemon) -> RunSummary:
    summary = daemon.run()
    assert not any(stage.is_alive() for stage in [daemon.source_stage, *daemon.stages])
    return summary


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
