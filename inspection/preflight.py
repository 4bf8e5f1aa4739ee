"""What the config's pure validation cannot see: does the folder source exist, is the model bundle there,
can the database and output folders be written? ``--validate-config`` and the daemon's start run it, so a
config that passes validation does not fail (or silently do nothing) once running.

A database server that is down is not a problem here: the daemon starts anyway and spools (see
:mod:`inspection.storage.link`).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from inspection.config import InspectionConfig


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable_folder_problem(key: str, folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (created on demand from its nearest existing parent)."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        return f"{key}: {base} is not a folder"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{key}: {base} is not writable"
    return None


def _source_problem(uri: str) -> str | None:
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme == "folder":
        folder = Path(rest).expanduser()
        if not folder.is_dir():
            return f"source: folder {folder} does not exist (or is not a folder)"
        if not os.access(folder, os.R_OK | os.X_OK):
            return f"source: folder {folder} is not readable"
    elif scheme == "video" and "://" not in rest and not Path(rest).expanduser().is_file():
        return f"source: video file {rest} does not exist"
    elif scheme == "camera" and not rest.strip().isdigit():
        return f"source: camera index {rest!r} must be a whole number"
    elif scheme == "genicam" and not Path(rest).expanduser().is_file():
        return f"source: GenTL producer file {rest} does not exist"
    return None


def _db_problem(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database).expanduser()
    if path.exists():
        if not path.is_file():
            return f"db: {path} is not a file"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"db: {path} is not readable and writable"
        return None
    return _writable_folder_problem("db", path.parent)


def _model_problem(model: str) -> str | None:
    path = Path(model).expanduser()
    if not (path / "manifest.json").is_file():
        return f"detector.model: {path} is not a model bundle (no manifest.json)"
    return None


def preflight(cfg: InspectionConfig, *, model: str | None = None) -> list[str]:
    """Problems that would stop (or silently idle) a run of ``cfg``, one line each naming the key; empty
    when the run can start. ``model`` is a ``--model`` override of ``detector.model``."""
    checks = (
        _source_problem(cfg.source),
        _db_problem(cfg.db),
        _model_problem(model or cfg.detector.model),
        _writable_folder_problem("output.dir", Path(cfg.output.dir).expanduser()),
    )
    return [problem for problem in checks if problem is not None]
