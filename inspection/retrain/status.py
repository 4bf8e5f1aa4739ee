"""``steel retrain --dry-run``: what the next pass would do, how many images it would train and judge on,
and about how long its training would take (measured on the last finished run), changing nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from datasets.settings import load_config
from datasets.split import SplitError, read_split
from inspection.retrain.collect import SNAPSHOT_MARKER, ReviewRange, verdict_counts
from inspection.retrain.config import RetrainConfig, project_file
from inspection.retrain.merge import read_annotations, read_source
from inspection.retrain.plan import reading, resolve_champion
from inspection.storage import retrain_store as store
from inspection.storage.db import upgrade
from inspection.storage.repository import Repository
from inspection.storage.reviews import review_high_water
from training.bundle import read_manifest
from training.config import TrainConfig


def _snapshot_images(cfg: RetrainConfig, run_ids: list[int]) -> int:
    total = 0
    for rid in run_ids:
        marker = Path(cfg.output.work_dir) / "snapshots" / f"run-{rid}" / SNAPSHOT_MARKER
        if marker.is_file():
            total += int(json.loads(marker.read_text(encoding="utf-8")).get("images", 0))
    return total


def _data_images(cfg: RetrainConfig) -> tuple[int, int, int]:
    """``(base replayed, calibration holdout, fixed set)`` image counts, as the job would take them."""
    base_side = len(
        read_source(cfg.base.model_copy(update={"max_images": None}), [], aset=read_annotations(cfg.base, []))
    )
    holdout = min(cfg.calibration.holdout_images, base_side // 2)
    base = (
        base_side - holdout if cfg.base.max_images is None else min(cfg.base.max_images, base_side - holdout)
    )
    fixed = len(read_source(cfg.fixed_set, [], aset=read_annotations(cfg.fixed_set, [])))
    return base, holdout, fixed


def _seconds_per_image_epoch(session: Session) -> tuple[float | None, str]:
    """Training seconds per image and epoch of the latest finished run that trained, and which run."""
    for run in store.finished_runs(session):
        training = (run.summary or {}).get("training") or {}
        seconds, epochs, images = (
            training.get("seconds"),
            training.get("epochs"),
            training.get("train_images"),
        )
        if seconds and epochs and images:
            return float(seconds) / (float(epochs) * float(images)), f"run {run.id}"
    return None, "no finished run has trained yet: nothing measured to estimate from"


def _champion_rate(champion_path: str | None) -> tuple[float | None, str]:
    """Seconds per image and epoch of the champion's own training (its manifest), when it says enough."""
    if champion_path is None:
        return None, "no finished run and no champion to estimate from"
    manifest = read_manifest(champion_path)
    training = manifest.get("training") or {}
    data = (training.get("config") or {}).get("data") or {}
    seconds, epochs, split_file = training.get("seconds"), training.get("epochs"), data.get("split_file")
    if not (seconds and epochs and split_file) or data.get("subset"):
        return None, "no finished run yet, and the champion's manifest does not say how long it trained"
    try:
        images = len(read_split(project_file(split_file) or split_file).train)
    except SplitError:
        return None, f"no finished run yet, and the champion's split file {split_file} is not here"
    rate = float(seconds) / (float(epochs) * images)
    return rate, f"the champion {manifest['version']}'s own training ({seconds:.0f} s, {epochs} epochs)"


def _estimate(per_image_epoch: float | None, basis: str, images: int, epochs: int) -> dict[str, Any]:
    if per_image_epoch is None:
        return {"training_seconds": None, "basis": basis}
    seconds = per_image_epoch * images * epochs
    return {
        "training_seconds": round(seconds, 1),
        "basis": f"{basis}: {per_image_epoch:.4f} s per image and epoch, x {images} images x {epochs} epochs",
        "text": f"about {seconds / 60:.0f} min of training" if seconds >= 90 else f"about {seconds:.0f} s",
    }


def retrain_status(cfg: RetrainConfig) -> dict[str, Any]:
    """What the next ``steel retrain`` would do, without doing it (``--dry-run``)."""
    repo = Repository(cfg.db)
    try:
        upgrade(repo.engine)
        with reading(repo) as s:
            high_water = review_high_water(s)
            up_to = store.newest_review_id(s)
            reviews = ReviewRange(high_water, max(up_to, high_water))
            counts = verdict_counts(s, reviews)
            new_defects = len(store.reviewed_defect_ids(s, after=reviews.after, up_to=reviews.up_to))
            open_run = store.latest_open_run_id(s)
            champion, path = resolve_champion(s, cfg)
            replay = store.replayable_run_ids(s, before=2**31) if cfg.replay.previous_snapshots else []
            per_image_epoch, basis = _seconds_per_image_epoch(s)
    finally:
        repo.dispose()
    if per_image_epoch is None:
        per_image_epoch, basis = _champion_rate(path)
    base, holdout, fixed = _data_images(cfg)
    replayed = _snapshot_images(cfg, replay)
    new_train = round(new_defects * (1 - cfg.collect.val_fraction))
    training = base + replayed + new_train
    epochs = load_config(cfg.recipe.path, TrainConfig, cfg.recipe.overrides).train.epochs
    return {
        "high_water_review_id": high_water,
        "newest_review_id": up_to,
        "new_reviews": counts,
        "min_reviews": cfg.collect.min_reviews,
        "open_run": open_run,
        "champion": champion,
        "champion_path": path,
        "would_run": open_run is not None or sum(counts.values()) >= cfg.collect.min_reviews,
        "images": {
            "new_windows_at_most": new_defects,
            "base_replayed": base,
            "earlier_snapshots_replayed": replayed,
            "training_about": training,
            "calibration": holdout,
            "fixed_set": fixed,
        },
        "epochs": epochs,
        "estimate": _estimate(per_image_epoch, basis, training, epochs),
    }
