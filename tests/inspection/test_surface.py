"""Sources say which strip surface a frame shows (issue 16 item 14), and it is stored with the frame: strip
metadata (``strip-sim:...,surface=bottom``), folder names (``top/``, ``bottom/``), or the daemon's
``surface`` setting for sources that cannot say. Real NEU-DET files, real SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from datasets.detections import Detections
from datasets.settings import ConfigError, data_root
from inspection.daemon import Daemon
from inspection.messages import Frame, FrameResult
from inspection.queues import END, BoundedQueue
from inspection.sources.folder import FolderSource
from inspection.stages.evidence import EvidenceOptions, EvidenceWriter
from inspection.stages.sink import Geometry, SinkStage
from inspection.storage.db import upgrade
from inspection.storage.repository import Repository
from inspection.storage.writer import ResilientWriter
from tests.inspection.daemon_fixtures import (  # noqa: F401 - fixtures
    ModelBundle,
    daemon_config,
    model_bundle_fixture,
    query,
    source_frames,
    strip_spec,
)

IMAGES = sorted((data_root() / "images").glob("*.jpg"))[:3]
T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def test_a_folder_source_takes_the_surface_from_its_folder_names(tmp_path: Path) -> None:
    drop = tmp_path / "line-1"
    for folder, image in (("top", IMAGES[0]), ("Bottom/cam-2", IMAGES[1]), (".", IMAGES[2])):
        (drop / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, drop / folder / image.name)
    frames = [f for f in FolderSource(drop, recursive=True) if isinstance(f, Frame)]
    said = {f.meta["name"].split("/")[0]: f.surface for f in frames}
    assert said == {"top": "top", "Bottom": "bottom", IMAGES[2].name: None}

    camera_folder = tmp_path / "cams" / "TOP"  # the watched folder itself names the surface
    camera_folder.mkdir(parents=True)
    shutil.copy(IMAGES[0], camera_folder / IMAGES[0].name)
    assert [f.surface for f in FolderSource(camera_folder) if isinstance(f, Frame)] == ["top"]


def test_the_strip_simulator_carries_the_surface_it_is_given_and_refuses_others() -> None:
    frames = source_frames(strip_spec(across=1, along=2, surface="bottom"))
    assert frames and {f.surface for f in frames} == {"bottom"}
    assert {f.surface for f in source_frames(strip_spec(across=1, along=2))} == {None}
    with pytest.raises(ConfigError, match="surface"):
        source_frames(strip_spec(across=1, along=2, surface="edge"))


def test_the_sink_stores_the_frame_s_surface_else_the_configured_one(tmp_path: Path, db_url: str) -> None:
    upgrade(db_url)
    inbox = BoundedQueue("sink", 8)
    sink = SinkStage(
        inbox,
        abort=threading.Event(),
        writer=ResilientWriter(Repository(db_url), tmp_path / "spool.jsonl"),
        evidence=EvidenceWriter(
            EvidenceOptions(tmp_path / "out", False, "none", True, 1e9), ["crazing"], "L1"
        ),
        geometry=Geometry(0.5, 0.5),
        line="L1",
        coil="C1",
        surface="top",  # the daemon's setting, for frames whose source does not say
    )
    sink.start()
    image = source_frames(strip_spec(across=1, along=1))[0].image
    for seq, surface in ((0, "bottom"), (1, None)):
        frame = Frame("cam", seq, image, T0 + timedelta(seconds=seq), surface=surface)
        inbox.put(FrameResult(frame, Detections.empty(), ()))
    inbox.put(END)
    sink.join(timeout=60)
    assert query(db_url, "SELECT seq, surface FROM frames ORDER BY seq") == [(0, "bottom"), (1, "top")]


def test_the_daemon_stores_the_surface_its_strip_source_says(
    tmp_path: Path, model_bundle: ModelBundle
) -> None:
    source = strip_spec(across=1, along=3, surface="bottom")
    cfg = daemon_config(tmp_path, source=source, bundle=model_bundle, surface="top")  # the source wins
    summary = Daemon(cfg, once=True).run()
    assert summary.tally.frames > 0
    assert query(cfg.db, "SELECT DISTINCT surface FROM frames") == [("bottom",)]
