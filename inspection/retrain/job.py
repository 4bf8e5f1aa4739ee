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

The daemon picks up a promotion through its promotion watcher (``model_versions.is_active``) and swaps the
bundle between two batches; ``steel models activate VERSION`` rolls back the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from datasets.settings import REPO_ROOT, load_config
from inspection.retrain.collect import ReviewRange, Snapshot, collect_snapshot, load_snapshot, verdict_counts
from inspection.retrain.config import RetrainConfig
from inspection.retrain.decide import Decision, SetScores, decide
from inspection.retrain.evaluate import brief, evaluate_bundle
from inspection.retrain.merge import MergedData, build_training_set, read_base_and_fixed
from inspection.retrain.report import format_summary
from inspection.storage.db import upgrade
from inspection.storage.repository import (
    Repository,
    activate_model,
    active_model,
    finish_retrain_run,
    register_model_version,
    review_high_water,
    start_retrain_run,
)
from inspection.storage.schema import RetrainRun, Review
from training.bundle import MANIFEST, load_bundle, read_manifest
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


@dataclass(frozen=True)
class RunPlan:
    run_id: int
    reviews: ReviewRange
    fine_tune_from: str | None  # champion version the challenger starts from (None: from scratch)
    fine_tune_path: str | None
    resumed: bool


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


@contextlib.contextmanager
def reading(repo: Repository) -> Iterator[Session]:
    """A read-only transaction that never takes SQLite's write lock (``Repository.transaction`` begins
    IMMEDIATE): collecting a snapshot must not stall the daemon's writer."""
    with Session(repo.engine, expire_on_commit=False) as session, session.begin():
        yield session


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- champion and run bookkeeping


def resolve_champion(session, cfg: RetrainConfig) -> tuple[str | None, str | None]:
    """``(version, bundle path)`` of the model on the line: the active one, else ``champion_fallback``."""
    active = active_model(session)
    if active is not None and active.path and Path(active.path).is_dir():
        return active.version, str(Path(active.path).resolve())
    if cfg.champion_fallback and Path(cfg.champion_fallback).is_dir():
        fallback = Path(cfg.champion_fallback).resolve()
        return str(read_manifest(fallback)["version"]), str(fallback)
    return None, None


def _open_or_plan(cfg: RetrainConfig, repo: Repository, *, restart: bool, log: Log) -> RunPlan | str:
    """The open run to resume, a new run, or the sentence saying why there is nothing to do."""
    with repo.transaction() as s:
        open_runs = list(
            s.scalars(select(RetrainRun).where(RetrainRun.status == "running").order_by(RetrainRun.id))
        )
        high_water = review_high_water(s)
        for stale in open_runs[:-1] if not restart else open_runs:
            reason = "abandoned by steel retrain --restart" if restart else "superseded by a newer open run"
            finish_retrain_run(s, stale.id, status="failed", decision_reason=reason, summary=stale.summary)
        run = open_runs[-1] if open_runs and not restart else None
        if run is not None:
            summary = run.summary or {}
            reviews = summary.get("reviews") or {}
            if "after" in reviews and reviews["after"] == high_water:
                log(f"resuming retrain run {run.id} (reviews {reviews['after'] + 1}..{reviews['up_to']})")
                return RunPlan(
                    run.id,
                    ReviewRange(int(reviews["after"]), int(reviews["up_to"])),
                    summary.get("fine_tuned_from"),
                    summary.get("fine_tune_path"),
                    resumed=True,
                )
            finish_retrain_run(
                s,
                run.id,
                status="failed",
                decision_reason="review range taken by another run",
                summary=summary,
            )
        up_to = int(s.scalar(select(func.max(Review.id))) or 0)
        reviews = ReviewRange(high_water, max(up_to, high_water))
        counts = verdict_counts(s, reviews)
        total = sum(counts.values())
        if total < cfg.collect.min_reviews:
            return (
                f"nothing to do: {total} new reviews after review {high_water} "
                f"(collect.min_reviews is {cfg.collect.min_reviews})"
            )
        version, path = resolve_champion(s, cfg)
        if cfg.from_champion and path is None:
            raise ValueError("from_champion: no active model in the database and no champion_fallback bundle")
        run = start_retrain_run(s, champion_version=version)
        run.last_review_id = reviews.up_to  # planned; the high-water mark only counts finished runs
        run.summary = {
            "phase": "started",
            "reviews": {"after": reviews.after, "up_to": reviews.up_to, **counts},
            "fine_tuned_from": version if cfg.from_champion else None,
            "fine_tune_path": path if cfg.from_champion else None,
        }
        s.flush()
        log(
            f"retrain run {run.id}: {total} new reviews "
            f"({reviews.after + 1}..{reviews.up_to}), champion {version}"
        )
        return RunPlan(
            run.id,
            reviews,
            version if cfg.from_champion else None,
            path if cfg.from_champion else None,
            False,
        )


def _set_phase(repo: Repository, run_id: int, phase: str, **extra: Any) -> None:
    """Record progress in the open run's summary (the dashboard shows it)."""
    with repo.transaction() as s:
        run = s.get(RetrainRun, run_id)
        if run is not None and run.status == "running":
            run.summary = {**(run.summary or {}), "phase": phase, **extra}


# ---------------------------------------------------------------- training


def build_train_config(
    cfg: RetrainConfig,
    *,
    class_names: list[str],
    init_from: str | None,
    merged: MergedData,
    out_dir: Path,
    name: str,
) -> TrainConfig:
    """The recipe with the merged data, the champion's architecture and weights (when fine-tuning), one
    evaluation at the end (nothing is selected on the fixed set) and no early stopping."""
    recipe = load_config(cfg.recipe.path, TrainConfig, cfg.recipe.overrides)
    data = recipe.model_dump(mode="json")
    if init_from is not None:
        manifest = read_manifest(init_from)
        arch = manifest["architecture"]
        section = arch[arch["family"]]
        section["weights"] = str(Path(init_from, manifest["weights"]["file"]).resolve())
        if "weights_backbone" in section:
            section["weights_backbone"] = None
        data["model"] = arch
    data["name"] = name
    data["data"].update(
        path=str(merged.export.resolve()),
        format="vott-json",
        images=None,
        split_file=str(merged.split_file.resolve()),
        subset=None,
        classes=list(class_names),
    )
    data["train"].update(
        out_dir=str(out_dir.resolve()), eval_every=data["train"]["epochs"], patience=None, device=cfg.device
    )
    return TrainConfig.model_validate(data)


def _checkpoint_matches(path: Path, train_cfg: TrainConfig, log: Log) -> bool:
    if not path.is_file():
        return False
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: train again rather than fail forever
        log(f"checkpoint {path} is unreadable ({type(exc).__name__}); training starts over")
        return False
    if state.get("config") != train_cfg.model_dump(mode="json"):
        log(f"checkpoint {path} was made with another config; training starts over")
        return False
    return True


def train_challenger(train_cfg: TrainConfig, *, nproc: int, log: Log) -> tuple[Path, dict[str, Any]]:
    """Train (or resume, or skip when already done) and return the bundle folder and training facts."""
    out = Path(train_cfg.train.out_dir)
    bundle, done = out / "bundle", out / "done.json"
    if done.is_file() and bundle.is_dir():
        log("challenger already trained")
        return bundle, json.loads(done.read_text(encoding="utf-8"))
    resume = _checkpoint_matches(out / "last.pt", train_cfg, log)
    if not resume and out.exists():
        shutil.rmtree(out)
    if resume:
        log(f"resuming training from {out / 'last.pt'}")
    if nproc > 0:
        config_file = out.parent / "train_config.json"
        _write_json(config_file, train_cfg.model_dump(mode="json"))
        cmd = [*torchrun_command(nproc), "-m", "inspection.cli", "train", str(config_file)]
        subprocess.run([*cmd, "--resume"] if resume else cmd, check=True, cwd=REPO_ROOT)
    else:
        from training.trainer import fit

        fit(train_cfg, resume=resume)
    if not bundle.is_dir():
        raise RuntimeError(f"{out}: training wrote no bundle (its final evaluation had no finite mAP)")
    history = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    info = {
        "epochs": len(history),
        "seconds": history[-1].get("train_seconds") if history else 0.0,
        "resumed": resume,
        "out_dir": str(out),
    }
    _write_json(done, info)
    return bundle, info


def torchrun_command(nproc: int) -> list[str]:
    """``torchrun --standalone --nproc_per_node=N`` through this interpreter (the venv's torch)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


# ---------------------------------------------------------------- registry


def publish_bundle(
    src: Path, dst: Path, *, version: str, metrics: dict[str, Any], retrain: dict[str, Any]
) -> dict[str, Any]:
    """Copy the trained bundle to the registry as ``version`` and return its manifest.

    The manifest's architecture stops pointing at the champion's weights file (the bundle's own weights
    are complete), so the challenger loads even after the champion's folder is gone. The copy is checked
    by loading it before it replaces ``dst``.
    """
    manifest = read_manifest(src)
    arch = manifest["architecture"]
    section = arch.get(arch.get("family"), {})
    for key in ("weights", "weights_backbone"):
        if key in section:
            section[key] = None
    manifest.update(version=version, name=version, metrics=metrics)
    manifest["training"] = {**(manifest.get("training") or {}), "retrain": retrain}
    tmp = dst.parent / f".{dst.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = manifest["weights"]["file"]
    shutil.copy2(src / weights, tmp / weights)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    load_bundle(tmp)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return read_manifest(dst)


# ---------------------------------------------------------------- the job


def run_retrain(cfg: RetrainConfig, *, restart: bool = False, log: Log = print) -> RetrainOutcome:
    """One retraining pass (see the module docstring). Safe to call from cron: a pass with too few new
    reviews does nothing, a killed pass is resumed, a concurrent pass raises RetrainBusyError."""
    work = Path(cfg.output.work_dir)
    with exclusive_lock(work / "retrain.lock"):
        repo = Repository(cfg.db)
        try:
            upgrade(repo.engine)
            plan = _open_or_plan(cfg, repo, restart=restart, log=log)
            if isinstance(plan, str):
                log(plan)
                return RetrainOutcome("nothing-to-do", reason=plan)
            summary: dict[str, Any] = {"run_id": plan.run_id, "fine_tuned_from": plan.fine_tune_from}
            try:
                return _execute(cfg, repo, plan, summary, log)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:4000]
                with repo.transaction() as s:
                    run = s.get(RetrainRun, plan.run_id)
                    if run is not None and run.status == "running":
                        finish_retrain_run(
                            s,
                            run.id,
                            status="failed",
                            decision_reason=reason,
                            summary={**summary, "error": reason},
                        )
                log(f"retrain run {plan.run_id} failed: {reason}")
                raise
        finally:
            repo.dispose()


def _execute(
    cfg: RetrainConfig, repo: Repository, plan: RunPlan, summary: dict[str, Any], log: Log
) -> RetrainOutcome:
    work = Path(cfg.output.work_dir)
    run_dir = work / "runs" / f"run-{plan.run_id}"
    version = f"{cfg.output.version_prefix}-r{plan.run_id}"
    if plan.fine_tune_path is not None:
        class_names = list(read_manifest(plan.fine_tune_path)["class_names"])
    else:
        with reading(repo) as s:
            _, champion_path = resolve_champion(s, cfg)
        recipe = load_config(cfg.recipe.path, TrainConfig, cfg.recipe.overrides)
        class_names = (
            list(read_manifest(champion_path)["class_names"]) if champion_path else recipe.data.classes
        )

    # 1. the snapshot of the new data
    snapshot = load_snapshot(work / "snapshots" / f"run-{plan.run_id}", class_names)
    if snapshot is None:
        with reading(repo) as s:
            snapshot = collect_snapshot(
                s,
                reviews=plan.reviews,
                class_names=class_names,
                cfg=cfg.collect,
                out_dir=work / "snapshots" / f"run-{plan.run_id}",
                name=f"retrain-run-{plan.run_id}",
            )
    summary.update(reviews=snapshot.stats["reviews"], data_added=snapshot.stats)
    _set_phase(repo, plan.run_id, "collected", data_added=snapshot.stats)
    log(
        f"new data: {len(snapshot.images)} images ({snapshot.stats['background_images']} background), "
        f"train {len(snapshot.train)} / val {len(snapshot.val)}; skipped {snapshot.stats['skipped']}"
    )
    if len(snapshot.images) < cfg.collect.min_images:
        reason = (
            f"not enough usable new data: {len(snapshot.images)} images < collect.min_images "
            f"{cfg.collect.min_images} (skipped: {snapshot.stats['skipped']}); the reviews stay unused"
        )
        summary["status"] = "failed"
        with repo.transaction() as s:
            finish_retrain_run(s, plan.run_id, status="failed", decision_reason=reason, summary=summary)
        log(reason)
        return RetrainOutcome("failed", plan.run_id, None, reason, summary)

    # 2. the training set: base replayed + earlier snapshots + the new train part; the fixed set aside
    previous = (
        _previous_snapshots(cfg, repo, plan.run_id, class_names) if cfg.replay.previous_snapshots else []
    )
    base, fixed = read_base_and_fixed(cfg.base, cfg.fixed_set, class_names)
    merged = build_training_set(
        base=base,
        previous=previous,
        new=snapshot,
        fixed=fixed,
        class_names=class_names,
        out_dir=run_dir / "data",
    )
    summary["training"] = {**merged.counts, "train_images": merged.train_images, "fixed_images": len(fixed)}

    # 3. the challenger
    _set_phase(repo, plan.run_id, "training", training=summary["training"])
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

    # 4. champion and challenger on the same fixed set and the new data's validation part
    _set_phase(repo, plan.run_id, "evaluating")
    with reading(repo) as s:
        champion_version, champion_path = resolve_champion(s, cfg)
    challenger = load_bundle(bundle_dir)
    champion = load_bundle(champion_path) if champion_path else None
    if champion is not None and champion.class_names != challenger.class_names:
        raise ValueError(f"champion classes {champion.class_names} differ from {challenger.class_names}")
    evals: dict[str, dict[str, Any]] = {"fixed": {}, "new": {}}
    for role, model in (("champion", champion), ("challenger", challenger)):
        if model is None:
            continue
        evals["fixed"][role] = evaluate_bundle(model, fixed, device=cfg.device)
        if snapshot.val:
            evals["new"][role] = evaluate_bundle(model, snapshot.val, device=cfg.device)
    summary["metrics"] = {
        key: {role: brief(result) for role, result in by_role.items()} for key, by_role in evals.items()
    }

    # 5. the decision, and everything recorded at once
    decision = _decide(evals, cfg)
    status = "promoted" if decision.promote else "rejected"
    summary.update(
        status=status,
        champion=champion_version,
        challenger=version,
        decision=decision.to_dict(),
        gates=cfg.gates.model_dump(mode="json"),
        phase="finished",
    )
    metrics = {
        "split": "fixed",
        **evals["fixed"]["challenger"],
        "new_data": brief(evals["new"]["challenger"]) if "challenger" in evals["new"] else None,
        "retrain_run": plan.run_id,
    }
    retrain_info = {
        "run_id": plan.run_id,
        "fine_tuned_from": plan.fine_tune_from,
        "snapshot_split_sha256": snapshot.stats["split_sha256"],
        "reviews": summary["reviews"],
    }
    registry = Path(cfg.output.registry_dir)
    registry.mkdir(parents=True, exist_ok=True)
    target = registry / version
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
            activate_model(s, version, promoted_by=f"retrain run {plan.run_id}", note=decision.reason[:2000])
    _write_json(run_dir / "summary.json", summary)
    (run_dir / "train" / "last.pt").unlink(missing_ok=True)  # resume state, useless once decided
    log(format_summary(summary))
    return RetrainOutcome(status, plan.run_id, version, decision.reason, summary)


def _decide(evals: dict[str, dict[str, Any]], cfg: RetrainConfig) -> Decision:
    def scores(key: str, role: str) -> SetScores | None:
        result = evals[key].get(role)
        return SetScores.from_eval(result) if result is not None else None

    challenger_fixed = scores("fixed", "challenger")
    assert challenger_fixed is not None
    return decide(
        champion_fixed=scores("fixed", "champion"),
        challenger_fixed=challenger_fixed,
        champion_new=scores("new", "champion"),
        challenger_new=scores("new", "challenger"),
        gates=cfg.gates,
    )


def _previous_snapshots(
    cfg: RetrainConfig, repo: Repository, run_id: int, class_names: list[str]
) -> list[Snapshot]:
    """Snapshots of earlier finished runs, oldest first (their reviews are consumed: this is their data)."""
    with reading(repo) as s:
        ids = list(
            s.scalars(
                select(RetrainRun.id)
                .where(RetrainRun.status.in_(("promoted", "rejected")), RetrainRun.id < run_id)
                .order_by(RetrainRun.id)
            )
        )
    found = []
    for rid in ids:
        snap = load_snapshot(Path(cfg.output.work_dir) / "snapshots" / f"run-{rid}", class_names)
        if snap is not None:
            found.append(snap)
    return found


def retrain_status(cfg: RetrainConfig) -> dict[str, Any]:
    """What the next ``steel retrain`` would do, without doing it (``--dry-run``)."""
    repo = Repository(cfg.db)
    try:
        upgrade(repo.engine)
        with reading(repo) as s:
            high_water = review_high_water(s)
            up_to = int(s.scalar(select(func.max(Review.id))) or 0)
            counts = verdict_counts(s, ReviewRange(high_water, max(up_to, high_water)))
            open_run = s.scalar(
                select(RetrainRun.id).where(RetrainRun.status == "running").order_by(RetrainRun.id.desc())
            )
            champion, path = resolve_champion(s, cfg)
    finally:
        repo.dispose()
    return {
        "high_water_review_id": high_water,
        "newest_review_id": up_to,
        "new_reviews": counts,
        "min_reviews": cfg.collect.min_reviews,
        "open_run": open_run,
        "champion": champion,
        "champion_path": path,
        "would_run": open_run is not None or sum(counts.values()) >= cfg.collect.min_reviews,
    }
