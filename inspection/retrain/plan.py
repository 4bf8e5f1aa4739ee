"""Which run a ``steel retrain`` pass works on: the open run to resume, a new run over the reviews since the
last finished run, or nothing to do; and which model is the champion."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from datasets.settings import REPO_ROOT
from inspection.retrain.collect import ReviewRange, verdict_counts
from inspection.retrain.config import RetrainConfig
from inspection.storage import retrain_store as store
from inspection.storage.model_registry import active_model
from inspection.storage.repository import Repository
from inspection.storage.reviews import finish_retrain_run, review_high_water, start_retrain_run
from inspection.storage.schema import RetrainRun
from training.bundle import read_manifest

Log = Callable[[str], None]


@dataclass(frozen=True)
class RunPlan:
    run_id: int
    reviews: ReviewRange
    fine_tune_from: str | None  # champion version the challenger starts from (None: from scratch)
    fine_tune_path: str | None
    resumed: bool


@contextlib.contextmanager
def reading(repo: Repository) -> Iterator[Session]:
    """A read-only transaction that never takes SQLite's write lock (``Repository.transaction`` begins
    IMMEDIATE): collecting a snapshot must not stall the daemon's writer."""
    with Session(repo.engine, expire_on_commit=False) as session, session.begin():
        yield session


def resolve_bundle_path(path: str | None) -> Path | None:
    """A bundle folder as registered or configured: as given when it exists from here, else relative to the
    repository (the shipped model is registered as ``models/...`` by a daemon started in the checkout)."""
    if not path:
        return None
    for candidate in (Path(path), REPO_ROOT / path):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def resolve_champion(session: Session, cfg: RetrainConfig) -> tuple[str | None, str | None]:
    """``(version, bundle path)`` of the model on the line: the active one, else ``champion_fallback``."""
    active = active_model(session)
    found = resolve_bundle_path(active.path) if active is not None else None
    if active is not None and found is not None:
        return active.version, str(found)
    fallback = resolve_bundle_path(cfg.champion_fallback)
    if fallback is not None:
        return str(read_manifest(fallback)["version"]), str(fallback)
    return None, None


def _close_stale_runs(session: Session, open_runs: list[RetrainRun], *, restart: bool) -> RetrainRun | None:
    """Fail every open run but the newest (all of them on ``--restart``); the newest, if kept."""
    for stale in open_runs[:-1] if not restart else open_runs:
        reason = "abandoned by steel retrain --restart" if restart else "superseded by a newer open run"
        finish_retrain_run(session, stale.id, status="failed", decision_reason=reason, summary=stale.summary)
    return open_runs[-1] if open_runs and not restart else None


def _resume_plan(session: Session, run: RetrainRun, high_water: int, log: Log) -> RunPlan | None:
    """The plan of an open run when its review range still follows the high-water mark, else it fails."""
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
        session, run.id, status="failed", decision_reason="review range taken by another run", summary=summary
    )
    return None


def _new_plan(session: Session, cfg: RetrainConfig, high_water: int, log: Log) -> RunPlan | str:
    """A new run over the reviews since ``high_water``, or the sentence saying why there is nothing to do."""
    up_to = store.newest_review_id(session)
    reviews = ReviewRange(high_water, max(up_to, high_water))
    counts = verdict_counts(session, reviews)
    total = sum(counts.values())
    if total < cfg.collect.min_reviews:
        return (
            f"nothing to do: {total} new reviews after review {high_water} "
            f"(collect.min_reviews is {cfg.collect.min_reviews})"
        )
    version, path = resolve_champion(session, cfg)
    if cfg.from_champion and path is None:
        raise ValueError("from_champion: no active model in the database and no champion_fallback bundle")
    tune_version, tune_path = (version, path) if cfg.from_champion else (None, None)
    run = start_retrain_run(session, champion_version=version)
    run.last_review_id = reviews.up_to  # planned; the high-water mark only counts finished runs
    run.summary = {
        "phase": "started",
        "reviews": {"after": reviews.after, "up_to": reviews.up_to, **counts},
        "fine_tuned_from": tune_version,
        "fine_tune_path": tune_path,
    }
    session.flush()
    span = f"{reviews.after + 1}..{reviews.up_to}"
    log(f"retrain run {run.id}: {total} new reviews ({span}), champion {version}")
    return RunPlan(run.id, reviews, tune_version, tune_path, False)


def open_or_plan(cfg: RetrainConfig, repo: Repository, *, restart: bool, log: Log) -> RunPlan | str:
    """The open run to resume, a new run, or the sentence saying why there is nothing to do."""
    with repo.transaction() as s:
        high_water = review_high_water(s)
        run = _close_stale_runs(s, store.open_retrain_runs(s), restart=restart)
        plan = _resume_plan(s, run, high_water, log) if run is not None else None
        return plan if plan is not None else _new_plan(s, cfg, high_water, log)
