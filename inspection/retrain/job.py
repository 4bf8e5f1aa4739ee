"""The retraining job: reviews -> snapshot -> challenger -> champion vs challenger -> decision, recorded.

Idempotent and resumable:

* A run is opened (``retrain_runs`` row, status ``running``) with the review range it will consume fixed
  in it: ``after`` the high-water mark of the last finished run, ``up_to`` the newest review at the start.
  Killed at any point, the next ``steel retrain`` finds the open run and resumes it with the same range:
  the snapshot is reused when it was written whole (else cut again), training resumes from its last
  checkpoint when that checkpoint is readable and made with the same config (else starts over), and
  evaluation is simply done again.
* The high-water mark only moves when the run finishes: registering the challenger, recording the decision
  with its numbers, marking the reviews as used and (on promotion) activating the challenger happen in one
  database transaction. No model is ever half-registered and no review is ever counted twice.
* An error (not a kill) closes the run as ``failed`` with the error as its reason; its reviews stay unused,
  so the next run takes them again.
* One job per work folder at a time (an exclusive lock file); a second one exits at once.
* The fixed set never reaches training (:mod:`.leakage`), the new data is split by coil or frame group
  (:mod:`.collect`), only promoted or accepted snapshots are replayed, and the challenger is judged at a
  calibrated per-class operating point (:mod:`.gate`). Old run folders and rejected challengers are pruned
  after each finished run (:mod:`.retention`).

The daemon picks up a promotion through its promotion watcher (``model_versions.is_active``) and swaps the
bundle between two batches; ``steel models activate VERSION`` rolls back the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets.settings import load_config
from inspection.retrain.anomaly import carry_champion_anomaly
from inspection.retrain.challenger import build_train_config, publish_bundle, train_challenger, write_json
from inspection.retrain.collect import Snapshot, collect_snapshot, load_snapshot
from inspection.retrain.config import RetrainConfig
from inspection.retrain.gate import Judgement, judge
from inspection.retrain.merge import DataSets, MergedData, build_training_set, read_data
from inspection.retrain.plan import RunPlan, open_or_plan, reading, resolve_champion
from inspection.retrain.report import format_summary
from inspection.retrain.retention import apply_retention
from inspection.storage import retrain_store as store
from inspection.storage.db import upgrade
from inspection.storage.model_registry import activate_model, register_model_version
from inspection.storage.repository import Repository
from inspection.storage.reviews import finish_retrain_run
from training.bundle import load_bundle, read_manifest
from training.config import TrainConfig

Log = Callable[[str], None]


class RetrainBusyError(RuntimeError):
    """Another retrain job holds the work folder's lock."""


@dataclass
class RetrainOutcome:
    """What a call of :func:`run_retrain` did: ``status`` is ``nothing-to-do``, ``promoted``, ``rejected``
    or ``failed``."""

    status: str
    run_id: int | None = None
    challenger_version: str | None = None
    reason: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` locked (``flock``) for the block; RetrainBusyError when someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetrainBusyError(f"{path}: another steel retrain is running (lock held)") from None
        yield  # closing the file releases the lock, also when the process is killed


def _set_phase(repo: Repository, run_id: int, phase: str, **extra: Any) -> None:
    """Record progress in the open run's summary (the dashboard shows it)."""
    with repo.transaction() as s:
        store.update_open_run_summary(s, run_id, {"phase": phase, **extra})


# ---------------------------------------------------------------- the job


def run_retrain(cfg: RetrainConfig, *, restart: bool = False, log: Log = print) -> RetrainOutcome:
    """One retraining pass (see the module docstring). Safe to call from cron: a pass with too few new
    reviews does nothing, a killed pass is resumed, a concurrent pass raises RetrainBusyError."""
    work = Path(cfg.output.work_dir)
    with exclusive_lock(work / "retrain.lock"):
        repo = Repository(cfg.db)
        try:
            upgrade(repo.engine)
            plan = open_or_plan(cfg, repo, restart=restart, log=log)
            if isinstance(plan, str):
                log(plan)
                return RetrainOutcome("nothing-to-do", reason=plan)
            summary: dict[str, Any] = {"run_id": plan.run_id, "fine_tuned_from": plan.fine_tune_from}
            try:
                outcome = _execute(cfg, repo, plan, summary, log)
            except Exception as exc:
                _record_failure(repo, plan.run_id, f"{type(exc).__name__}: {exc}"[:4000], summary, log)
                raise
            _prune(cfg, repo, log)
            return outcome
        finally:
            repo.dispose()


def _record_failure(repo: Repository, run_id: int, reason: str, summary: dict[str, Any], log: Log) -> None:
    with repo.transaction() as s:
        run = store.retrain_run(s, run_id)
        if run is not None and run.status == "running":
            finish_retrain_run(
                s, run.id, status="failed", decision_reason=reason, summary={**summary, "error": reason}
            )
    log(f"retrain run {run_id} failed: {reason}")


def _prune(cfg: RetrainConfig, repo: Repository, log: Log) -> None:
    with reading(repo) as s:
        removed = apply_retention(s, cfg)
    if removed:
        log(f"retention: removed {len(removed)} old folders ({', '.join(p.name for p in removed[:5])}...)")


def _class_names(cfg: RetrainConfig, repo: Repository, plan: RunPlan) -> list[str]:
    """The classes of the model fine-tuned from, else of the champion, else of the recipe."""
    if plan.fine_tune_path is not None:
        return list(read_manifest(plan.fine_tune_path)["class_names"])
    with reading(repo) as s:
        _, champion_path = resolve_champion(s, cfg)
    if champion_path:
        return list(read_manifest(champion_path)["class_names"])
    return list(load_config(cfg.recipe.path, TrainConfig, cfg.recipe.overrides).data.classes)


def _counts(stats: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's counts for the run's summary (the window -> group map stays in snapshot.json)."""
    return {key: value for key, value in stats.items() if key != "groups"}


def _collect(
    cfg: RetrainConfig, repo: Repository, plan: RunPlan, data: DataSets, class_names: list[str], log: Log
) -> Snapshot:
    """Step 1: the snapshot of the new data (reused when a killed run wrote it whole)."""
    folder = Path(cfg.output.work_dir) / "snapshots" / f"run-{plan.run_id}"
    snapshot = load_snapshot(folder, class_names)
    if snapshot is None:
        with reading(repo) as s:
            snapshot = collect_snapshot(
                s,
                reviews=plan.reviews,
                class_names=class_names,
                cfg=cfg.collect,
                out_dir=folder,
                name=f"retrain-run-{plan.run_id}",
                guard=data.guard,
            )
    stats = snapshot.stats
    _set_phase(repo, plan.run_id, "collected", data_added=_counts(stats))
    log(
        f"new data: {len(snapshot.images)} images ({stats['background_images']} background), "
        f"train {len(snapshot.train)} / val {len(snapshot.val)} (split by coil or frame group); "
        f"skipped {stats['skipped']}"
    )
    return snapshot


def _too_little_data(
    cfg: RetrainConfig, repo: Repository, plan: RunPlan, snapshot: Snapshot, summary: dict[str, Any], log: Log
) -> RetrainOutcome:
    reason = (
        f"not enough usable new data: {len(snapshot.images)} images < collect.min_images "
        f"{cfg.collect.min_images} (skipped: {snapshot.stats['skipped']}); the reviews stay unused"
    )
    summary["status"] = "failed"
    with repo.transaction() as s:
        finish_retrain_run(s, plan.run_id, status="failed", decision_reason=reason, summary=summary)
    log(reason)
    return RetrainOutcome("failed", plan.run_id, None, reason, summary)


def _merge(
    cfg: RetrainConfig,
    repo: Repository,
    plan: RunPlan,
    snapshot: Snapshot,
    data: DataSets,
    class_names: list[str],
) -> MergedData:
    """Step 2: base replayed, replayable earlier snapshots, the new train part; fixed set, holdout aside."""
    previous = (
        _previous_snapshots(cfg, repo, plan.run_id, class_names) if cfg.replay.previous_snapshots else []
    )
    return build_training_set(
        base=data.base,
        previous=previous,
        new=snapshot,
        fixed=data.fixed,
        class_names=class_names,
        out_dir=Path(cfg.output.work_dir) / "runs" / f"run-{plan.run_id}" / "data",
        guard=data.guard,
        holdout=data.holdout,
    )


def _execute(
    cfg: RetrainConfig, repo: Repository, plan: RunPlan, summary: dict[str, Any], log: Log
) -> RetrainOutcome:
    version = f"{cfg.output.version_prefix}-r{plan.run_id}"
    class_names = _class_names(cfg, repo, plan)
    data = read_data(
        cfg.base,
        cfg.fixed_set,
        class_names,
        holdout_images=cfg.calibration.holdout_images,
        holdout_seed=cfg.calibration.seed,
    )
    # 1. the snapshot of the new data
    snapshot = _collect(cfg, repo, plan, data, class_names, log)
    summary.update(reviews=snapshot.stats["reviews"], data_added=_counts(snapshot.stats))
    if len(snapshot.images) < cfg.collect.min_images:
        return _too_little_data(cfg, repo, plan, snapshot, summary, log)
    # 2. the training set
    merged = _merge(cfg, repo, plan, snapshot, data, class_names)
    summary["training"] = {
        **merged.counts,
        "train_images": merged.train_images,
        "fixed_images": len(data.fixed),
        "calibration_images": len(data.holdout),
    }
    # 3. the challenger
    _set_phase(repo, plan.run_id, "training", training=summary["training"])
    run_dir = Path(cfg.output.work_dir) / "runs" / f"run-{plan.run_id}"
    train_cfg = build_train_config(
        cfg,
        class_names=class_names,
        init_from=plan.fine_tune_path,
        merged=merged,
        out_dir=run_dir / "train",
        name=version,
    )
    bundle_dir, train_info = train_challenger(train_cfg, nproc=cfg.nproc, log=log)
    summary["training"].update(train_info)
    # 4. champion and challenger at their operating points, on the fixed set and the new data's val part
    _set_phase(repo, plan.run_id, "evaluating")
    with reading(repo) as s:
        champion_version, champion_path = resolve_champion(s, cfg)
    summary["anomaly"] = carry_champion_anomaly(champion_path or plan.fine_tune_path, bundle_dir, log)
    judged = judge(
        load_bundle(champion_path) if champion_path else None,
        load_bundle(bundle_dir),
        fixed=data.fixed,
        calibration=data.holdout,
        new_val=snapshot.val,
        cfg=cfg,
    )
    # 5. the decision, and everything recorded at once
    return _record(cfg, repo, plan, (bundle_dir, version, champion_version), judged, snapshot, summary, log)


def _record(
    cfg: RetrainConfig,
    repo: Repository,
    plan: RunPlan,
    models: tuple[Path, str, str | None],
    judged: Judgement,
    snapshot: Snapshot,
    summary: dict[str, Any],
    log: Log,
) -> RetrainOutcome:
    """Publish the challenger; register it, close the run, (on promotion) activate it: one transaction."""
    bundle_dir, version, champion_version = models
    decision = judged.decision
    status = "promoted" if decision.promote else "rejected"
    summary.update(
        status=status,
        champion=champion_version,
        challenger=version,
        metrics=judged.metrics,
        operating_points=judged.operating_points,
        decision=decision.to_dict(),
        gates=cfg.gates.model_dump(mode="json"),
        phase="finished",
    )
    metrics, retrain_info = _manifest_facts(cfg, plan, judged, snapshot, summary)
    target = Path(cfg.output.registry_dir) / version
    target.parent.mkdir(parents=True, exist_ok=True)
    manifest = publish_bundle(bundle_dir, target, version=version, metrics=metrics, retrain=retrain_info)
    with repo.transaction() as s:
        register_model_version(s, manifest, str(target.resolve()))
        run = finish_retrain_run(
            s,
            plan.run_id,
            status=status,
            decision_reason=decision.reason,
            challenger_version=version,
            summary=summary,
            last_review_id=plan.reviews.up_to,
        )
        run.champion_version = champion_version
        if decision.promote:
            activate_model(
                s,
                version,
                promoted_by=f"retrain run {plan.run_id}",
                note=decision.reason[:2000],
                kind="retrain",
            )
    run_dir = Path(cfg.output.work_dir) / "runs" / f"run-{plan.run_id}"
    write_json(run_dir / "summary.json", summary)
    (run_dir / "train" / "last.pt").unlink(missing_ok=True)  # resume state, useless once decided
    log(format_summary(summary))
    return RetrainOutcome(status, plan.run_id, version, decision.reason, summary)


def _manifest_facts(
    cfg: RetrainConfig, plan: RunPlan, judged: Judgement, snapshot: Snapshot, summary: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The challenger manifest's ``metrics`` and ``training.retrain`` (its calibrated operating point too)."""
    metrics = {
        "split": "fixed",
        **(judged.metrics["fixed"]["challenger"]),
        "new_data": judged.metrics["new"].get("challenger"),
        "retrain_run": plan.run_id,
    }
    retrain_info = {
        "run_id": plan.run_id,
        "fine_tuned_from": plan.fine_tune_from,
        "snapshot_split_sha256": snapshot.stats["split_sha256"],
        "reviews": summary["reviews"],
        "anomaly": summary.get("anomaly"),
        "operating_point": {
            "thresholds": judged.challenger_thresholds,
            "target_recall": cfg.calibration.target_recall,
        },
    }
    return metrics, retrain_info


def _previous_snapshots(
    cfg: RetrainConfig, repo: Repository, run_id: int, class_names: list[str]
) -> list[Snapshot]:
    """Snapshots of earlier runs that may be replayed, oldest first: promoted runs' unless a person dropped
    them, rejected runs' only when a person accepted them (a rejected run's data is not replayed forever)."""
    with reading(repo) as s:
        ids = store.replayable_run_ids(s, before=run_id)
    found = []
    for rid in ids:
        snap = load_snapshot(Path(cfg.output.work_dir) / "snapshots" / f"run-{rid}", class_names)
        if snap is not None:
            found.append(snap)
    return found
