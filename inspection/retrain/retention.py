"""What finished retrain runs leave on disk: rejected challengers' bundles and run folders are pruned to the
newest few; the database keeps every row (runs, decisions, registered versions) and snapshots are kept
(they are the replayable data and the audit of what each run trained on)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy.orm import Session

from inspection.retrain.config import RetrainConfig
from inspection.storage.model_history import ever_activated
from inspection.storage.retrain_store import finished_runs


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()


def prune_candidates(session: Session, cfg: RetrainConfig) -> list[Path]:
    """Folders retention would delete: rejected challengers beyond the newest ``keep_rejected_bundles``
    (never one that was ever active), and ``runs/run-<id>`` folders beyond the newest ``keep_run_dirs``."""
    registry = Path(cfg.output.registry_dir)
    runs_dir = Path(cfg.output.work_dir) / "runs"
    runs = finished_runs(session)
    activated = ever_activated(session)
    rejected = [r.challenger_version for r in runs if r.status == "rejected" and r.challenger_version]
    out = [
        registry / version
        for version in rejected[cfg.retention.keep_rejected_bundles :]
        if version not in activated
        and (registry / version).is_dir()
        and _inside(registry / version, registry)
    ]
    out += [
        runs_dir / f"run-{r.id}"
        for r in runs[cfg.retention.keep_run_dirs :]
        if (runs_dir / f"run-{r.id}").is_dir()
    ]
    return out


def apply_retention(session: Session, cfg: RetrainConfig) -> list[Path]:
    """Delete :func:`prune_candidates`; the folders removed."""
    removed = prune_candidates(session, cfg)
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed
