"""What finished retrain runs leave on disk: rejected challengers' bundles and run folders are pruned to the
newest few; the database keeps every row (runs, decisions, registered versions). Snapshots of promoted and
rejected runs are kept (they are the replayable data and the audit of what each run trained on); those of
failed runs are never replayed and are pruned like run folders: a failed run leaves its reviews unused, so
every later pass cuts a new snapshot of the same reviews, and a pass failing from cron each hour would
otherwise fill the disk."""

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
    (never one that was ever active), ``runs/run-<id>`` folders beyond the newest ``keep_run_dirs``, and the
    ``snapshots/run-<id>`` of failed runs beyond the newest ``keep_run_dirs`` failed ones."""
    registry = Path(cfg.output.registry_dir)
    runs_dir = Path(cfg.output.work_dir) / "runs"
    snapshots_dir = Path(cfg.output.work_dir) / "snapshots"
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
    failed = [r for r in runs if r.status == "failed"]
    out += [
        snapshots_dir / f"run-{r.id}"
        for r in failed[cfg.retention.keep_run_dirs :]
        if (snapshots_dir / f"run-{r.id}").is_dir()
    ]
    return out


def apply_retention(session: Session, cfg: RetrainConfig) -> list[Path]:
    """Delete :func:`prune_candidates`; the folders removed."""
    removed = prune_candidates(session, cfg)
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed
