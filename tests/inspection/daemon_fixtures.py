"""Shared fixtures and helpers for the daemon's end-to-end and reliability tests.

The fixtures (``model_bundle``, ``swap_bundle``) are registered once, by ``tests/inspection/conftest.py``
importing them: a test names them as parameters and imports only the helpers it calls.

The model. Tests prefer the shipped bundle (``models/neu-yolo-n``, committed with the repository), then a
copy of the bundle a local training run keeps rewriting (``runs/neu-yolo-n/bundle``, copied and verified
against its manifest's SHA-256 because the trainer may be writing it), and fall back to an untrained YOLO-n
saved as a bundle, which exercises every pipeline path but detects nothing worth measuring
(:attr:`ModelBundle.trained` says which one a test got).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from datasets.model import NEU_DET_CLASSES
from datasets.settings import REPO_ROOT, data_root
from inspection.config import InspectionConfig
from inspection.inspect_cli import DEFAULT_CONFIG
from inspection.messages import Frame

if TYPE_CHECKING:  # the daemon loads torch: the conftest imports this module for every inspection test
    from inspection.daemon import Daemon, RunSummary

SHIPPED_BUNDLE = REPO_ROOT / "models" / "neu-yolo-n"
TRAINING_BUNDLE = REPO_ROOT / "runs" / "neu-yolo-n" / "bundle"
CLI_TIMEOUT_S = 240


@dataclass(frozen=True)
class ModelBundle:
    """A bundle folder the tests may read (never write), its version and whether it was trained."""

    path: Path
    version: str
    trained: bool


def _verified_copy(src: Path, dst: Path, *, attempts: int = 10) -> bool:
    """Copy a bundle that another process may be rewriting; True once a copy loads with matching weights."""
    from training.bundle import load_bundle  # torch (seconds): see the TYPE_CHECKING note above

    for _ in range(attempts):
        shutil.rmtree(dst, ignore_errors=True)
        try:
            shutil.copytree(src, dst)
            load_bundle(dst)  # checks the weights' SHA-256 against the manifest
            return True
        except (OSError, ValueError, KeyError):  # caught mid-write: try again
            time.sleep(1.0)
    shutil.rmtree(dst, ignore_errors=True)
    return False


def _untrained_bundle(dst: Path) -> Path:
    """A seeded, untrained YOLO-n at 64 px saved as a bundle (seconds, no data)."""
    # torch (seconds): the conftest imports this module for every inspection test, most run no model
    import torch

    from training.bundle import save_bundle
    from training.config import ModelConfig
    from training.registry import build_model

    torch.manual_seed(0)
    config = ModelConfig(family="yolo", image_size=64, in_channels=1)
    model = build_model(config, num_classes=len(NEU_DET_CLASSES)).eval()
    return save_bundle(
        dst,
        model,
        model_config=config,
        class_names=list(NEU_DET_CLASSES),
        version="untrained-yolo-n-64",
        score_threshold=0.25,
    )


_BUNDLE_CACHE: dict[str, ModelBundle] = {}


def resolve_bundle(scratch: Path) -> ModelBundle:
    """The best bundle available (see the module docstring); built once per test session."""
    if "model" in _BUNDLE_CACHE:
        return _BUNDLE_CACHE["model"]
    from training.bundle import read_manifest  # torch (seconds): see the TYPE_CHECKING note above

    if (SHIPPED_BUNDLE / "manifest.json").is_file():
        path, trained = SHIPPED_BUNDLE, True
    elif (TRAINING_BUNDLE / "manifest.json").is_file() and _verified_copy(TRAINING_BUNDLE, scratch / "run"):
        path, trained = scratch / "run", True
    else:
        path, trained = _untrained_bundle(scratch / "untrained"), False
    bundle = ModelBundle(path, str(read_manifest(path)["version"]), trained)
    _BUNDLE_CACHE["model"] = bundle
    return bundle


def renamed_bundle(src: ModelBundle, dst: Path, suffix: str) -> ModelBundle:
    """A copy of ``src`` under another version (same weights): what a retrain promotion looks like."""
    shutil.copytree(src.path, dst)
    manifest_path = dst / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["version"] = f"{manifest['version']}-{suffix}"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ModelBundle(dst, manifest["version"], src.trained)


@pytest.fixture(scope="session", name="model_bundle")
def model_bundle_fixture(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """The model the daemon tests run (read-only)."""
    import torch  # seconds to import: only tests that run a model ask for this fixture

    torch.set_num_threads(1)
    return resolve_bundle(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="session", name="swap_bundle")
def swap_bundle_fixture(model_bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """The same weights under another version, for hot-swap tests."""
    if "swap" not in _BUNDLE_CACHE:
        _BUNDLE_CACHE["swap"] = renamed_bundle(model_bundle, tmp_path_factory.mktemp("swap") / "b", "swap")
    return _BUNDLE_CACHE["swap"]


# ------------------------------------------------------------------------------------------ configs


def sqlite_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'inspection.db'}"


def daemon_config(
    tmp_path: Path, *, source: str, bundle: ModelBundle, db: str | None = None, **overrides: Any
) -> InspectionConfig:
    """The shipped daemon config (``configs/inspection.yaml``) writing under ``tmp_path``, one CPU thread,
    no promotion polling.

    ``overrides`` are top-level fields or ``section__field`` keys (``queues__size=1``).
    """
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    settings: dict[str, Any] = {
        "source": source,
        "db": db or sqlite_db(tmp_path),
        "line": "test-line",
        "detector__model": str(bundle.path),
        "detector__threads": 1,
        "detector__batch_wait_ms": 2,
        "detector__watch_db_promotions_s": None,
        "output__dir": str(tmp_path / "out"),
        "output__live_every_s": 0,
        **overrides,
    }
    for key, value in settings.items():
        section, sep, field = key.partition("__")
        if sep:
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value
    return InspectionConfig.model_validate(data)


def strip_spec(**fields: Any) -> str:
    """``strip-sim:`` URI from fields (validation images, 200-line overlap, coil ``c1`` by default)."""
    spec = {"split": "val", "coil": "c1", "frame_lines": 400, "overlap_lines": 200, **fields}
    return "strip-sim:" + ",".join(f"{k}={v}" for k, v in spec.items())


def source_frames(uri: str) -> list[Frame]:
    """The frames a strip-sim URI plays, read without pacing (``line_rate`` does not change them)."""
    from inspection.sources.strip_sim import StripSimulator  # ~0.1 s: only the strip tests call this

    scheme, _, spec = uri.partition(":")
    assert scheme == "strip-sim"
    return [event for event in StripSimulator.from_spec(spec, line_rate=0) if isinstance(event, Frame)]


# ------------------------------------------------------------------------------------------ database


def query(db: str, sql: str, **params: Any) -> list[tuple]:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def frame_rows(db: str) -> list[tuple]:
    """``(id, source, seq, status, error, model_version)`` of every stored frame, by id."""
    return query(
        db,
        "SELECT f.id, f.source, f.seq, f.status, f.error, m.version FROM frames f "
        "LEFT JOIN model_versions m ON m.id = f.model_version_id ORDER BY f.id",
    )


def assert_each_once(rows: Iterable[tuple], source: str, expected_seqs: Sequence[int]) -> None:
    """Every expected frame is stored exactly once, and nothing else is."""
    keys = [(r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys)), "a frame is stored twice"
    assert sorted(k for k in keys) == sorted((source, s) for s in expected_seqs)


@contextmanager
def scratch_pg_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards) whose admin connections survive a server restart:
    every statement opens its own connection (NullPool), so none is stale after the test restarts it."""
    name = f"steel_outage_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND usename = current_user AND pid <> pg_backend_pid()"
                ),
                {"db": name},
            )
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        admin.dispose()


# ------------------------------------------------------------------------------------------ CLI


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "inspection.cli", "inspect", *args]


def run_cli(*args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for(predicate, *, timeout: float, every: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def neu_images(count: int) -> list[Path]:
    """The first ``count`` NEU-DET images of the development split, in name order."""
    paths = sorted((data_root() / "images").glob("*.jpg"))
    assert len(paths) >= count, f"NEU-DET images missing under {data_root()}"
    return paths[:count]


def finished(daemon: Daemon) -> RunSummary:
    """``daemon.run()`` to its end, every stage thread stopped."""
    summary = daemon.run()
    assert not any(stage.is_alive() for stage in [daemon.source_stage, *daemon.stages])
    return summary


def frames_stored(db: str) -> int:
    try:
        return int(query(db, "SELECT COUNT(*) FROM frames")[0][0])
    except Exception:  # not migrated yet
        return 0
