"""One trainer for every detector family: the model's contract (loss dict in train mode, detections in
eval mode) is all it knows. ``train_one_epoch`` and ``predict`` are plain functions; ``fit`` wires
data, model, optimizer, EMA, checkpoints, early stopping, logs and plots together."""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DistributedSampler, RandomSampler
from tqdm import tqdm

from datasets.augment import reseed_transform
from datasets.model import ImageRecord
from datasets.torch_dataset import Batch, DetectionDataset, Target
from training.bundle import load_bundle, save_bundle
from training.checkpoint import save_checkpoint
from training.config import TrainConfig
from training.data import PreparedData, write_json
from training.distributed import barrier, broadcast_flag, cleanup
from training.ema import ModelEMA, unwrap
from training.evaluation import EvalResult, Prediction, evaluate, ground_truth_from_records
from training.fit_setup import (
    DetectionLoader,
    Progress,
    Run,
    build_run,
    fresh_train_loader,
    resume_progress,
)
from training.plots import plot_confusion_matrix, plot_pr_curves, plot_training_curves


class NonFiniteLossError(RuntimeError):
    """Training diverged; stopping beats writing NaN weights into a bundle."""


@dataclass
class FitResult:
    out_dir: Path
    bundle_dir: Path | None
    best_map50: float
    epochs_run: int
    history: list[dict[str, Any]]


def _to_device(
    images: torch.Tensor, targets: list[Target], device: torch.device, channels_last: bool
) -> Batch:
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = [
        {
            "boxes": t["boxes"].to(device, non_blocking=True),
            "labels": t["labels"].to(device, non_blocking=True),
        }
        for t in targets
    ]
    return images, targets


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    ema: ModelEMA | None = None,
    grad_clip: float | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_steps: int | None = None,
    progress: tqdm | None = None,
    freeze_bn_stats: bool = False,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each loss term and their sum (``loss``)."""
    model.train()
    if freeze_bn_stats:
        freeze_batchnorm(model)
    sums: dict[str, float] = {}
    steps = 0
    for images, targets in loader:
        images, targets = _to_device(images, targets, device, channels_last)
        with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            terms = {k: float(v.detach()) for k, v in losses.items()}
            raise NonFiniteLossError(f"loss is {loss.item()} at step {steps}: {terms}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        steps += 1
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{sums['loss'] / steps:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if max_steps is not None and steps >= max_steps:
            break
    return {k: v / max(steps, 1) for k, v in sums.items()}


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode: it normalises with, and no longer updates, its running
    statistics (the rest of the model keeps its mode)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@torch.no_grad()
def validation_loss(model: nn.Module, loader: Iterable[Batch], *, device: torch.device) -> float:
    """Mean training loss on held-out data: train-mode forward (so the model returns losses) with
    normalisation layers frozen in eval mode, so running statistics are not touched."""
    model.train()
    freeze_batchnorm(model)
    total, steps = 0.0, 0
    for images, targets in loader:
        images, targets = _to_device(images, targets, device, False)
        total += float(sum(model(images, targets).values()))
        steps += 1
    model.eval()
    return total / max(steps, 1)


@torch.inference_mode()
def predict(
    model: nn.Module, loader: Iterable[Batch], *, device: torch.device, amp: bool = False
) -> list[Prediction]:
    """Detections for every image of ``loader``, boxes mapped back to the source image's pixels."""
    model.eval()
    preds: list[Prediction] = []
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            outputs = model(images)
        size_h, size_w = images.shape[2], images.shape[3]
        for out, target in zip(outputs, targets, strict=True):
            orig_h, orig_w = target["orig_size"]
            scale = torch.tensor([orig_w / size_w, orig_h / size_h] * 2, device=out["boxes"].device)
            preds.append(
                Prediction(
                    (out["boxes"].float() * scale).cpu().numpy(),
                    out["scores"].float().cpu().numpy(),
                    out["labels"].cpu().numpy(),
                )
            )
    return preds


def evaluate_model(
    model: nn.Module,
    loader: DetectionLoader,
    *,
    records: Sequence[ImageRecord],
    class_names: list[str],
    device: torch.device,
    conf_threshold: float,
    iou_threshold: float = 0.5,
) -> EvalResult:
    preds = predict(model, loader, device=device)
    gts = ground_truth_from_records(records, class_names)
    return evaluate(gts, preds, class_names, conf_threshold=conf_threshold, iou_threshold=iou_threshold)


def _set_epoch(loader: DetectionLoader, dataset: DetectionDataset, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s order and augmentations a pure function of (seed, epoch): exact resume."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler) and sampler.generator is not None:
        sampler.generator.manual_seed(seed + epoch)
    if dataset.transform is not None:
        reseed_transform(dataset.transform, seed * 1000 + epoch)


def _close_mosaic(run: Run, epoch: int) -> None:
    """Mosaic and copy-paste off from epoch ``epochs - close_mosaic_epochs`` on (a pure function of the
    epoch, so a resumed run switches where a straight one did)."""
    on = epoch < run.cfg.train.epochs - run.cfg.data.augment.close_mosaic_epochs
    if run.train_ds.composites == on:
        return
    run.train_ds.set_composites(on)
    if run.cfg.train.workers > 0:
        run.train_loader = fresh_train_loader(run)


def _write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    write_json(out_dir / "metrics.json", history)
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    with open(out_dir / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    try:
        plot_training_curves(history, out_dir / "training_curves.png")
    except Exception as exc:  # a plot must never kill a long run
        print(f"warning: could not plot training curves: {exc}")


def _train_epoch(run: Run, epoch: int, progress: Progress) -> dict[str, Any]:
    """One epoch of training; returns its log row (epoch, lr, time, mean losses)."""
    cfg = run.cfg
    _close_mosaic(run, epoch)
    _set_epoch(run.train_loader, run.train_ds, cfg.train.seed, epoch)
    started = time.perf_counter()
    bar = tqdm(
        total=run.steps_per_epoch,
        desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
        disable=not run.info.is_main or not sys.stderr.isatty(),  # no bars in logs and cron mail
        dynamic_ncols=True,
        leave=False,
    )
    losses = train_one_epoch(
        run.model,
        run.train_loader,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        scaler=run.scaler,
        device=run.device,
        ema=run.ema,
        grad_clip=cfg.train.grad_clip,
        amp_dtype=run.amp_dtype,
        channels_last=run.channels_last,
        max_steps=cfg.train.max_steps,
        progress=bar,
        freeze_bn_stats=cfg.train.freeze_bn_stats,
    )
    bar.close()
    progress.train_seconds += time.perf_counter() - started
    return {
        "epoch": epoch + 1,
        "lr": run.scheduler.get_last_lr()[0],
        "train_seconds": round(progress.train_seconds, 1),
        **{f"train_{k}" if k != "loss" else "train_loss": v for k, v in losses.items()},
    }


def _validate_epoch(run: Run, epoch: int, row: dict[str, Any], progress: Progress) -> bool:
    """Rank 0, on evaluation epochs: validation loss and mAP into ``row``, the bundle rewritten on a
    new best; returns whether patience ran out."""
    cfg = run.cfg
    if (epoch + 1) % cfg.train.eval_every != 0 and epoch + 1 != cfg.train.epochs:
        return False
    row["val_loss"] = validation_loss(run.eval_model, run.val_loader, device=run.device)
    result = evaluate_model(
        run.eval_model,
        run.val_loader,
        records=run.data.val,
        class_names=run.data.class_names,
        device=run.device,
        conf_threshold=cfg.eval.conf_threshold,
    )
    row.update(map50=result.map50, map50_95=result.map50_95)
    score = -1.0 if math.isnan(result.map50) else result.map50
    if score > progress.best_map50:
        progress.best_map50, progress.stale = score, 0
        _save_bundle(cfg, run.eval_model, run.data, result, run.bundle_dir, epoch + 1, progress.train_seconds)
    else:
        progress.stale += 1
    return cfg.train.patience is not None and progress.stale >= cfg.train.patience


def _checkpoint(run: Run, epoch: int, progress: Progress) -> None:
    save_checkpoint(
        run.checkpoint_path,
        model=unwrap(run.model),
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        scaler=run.scaler,
        ema=run.ema,
        epoch=epoch,
        best_map50=progress.best_map50,
        stale=progress.stale,
        history=progress.history,
        train_seconds=progress.train_seconds,
        config=run.cfg.model_dump(mode="json"),
    )


def fit(cfg: TrainConfig, *, resume: bool = False) -> FitResult:
    """Train ``cfg``; rank 0 writes ``out_dir/{last.pt, metrics.*, split.json, bundle/}``."""
    run = build_run(cfg)
    progress = resume_progress(run) if resume else Progress()
    epoch = progress.start_epoch - 1
    for epoch in range(progress.start_epoch, cfg.train.epochs):
        row = _train_epoch(run, epoch, progress)
        stop = False
        if run.info.is_main:
            stop = _validate_epoch(run, epoch, row, progress)
            progress.history.append(row)
            _write_history(run.out_dir, progress.history)
            _checkpoint(run, epoch, progress)
            print(_epoch_line(row), flush=True)
        if broadcast_flag(stop, run.info):
            if run.info.is_main:
                print(f"early stop: no val mAP@0.5 gain for {progress.stale} evaluations")
            break
    if run.info.is_main and run.bundle_dir.exists():
        _final_report(cfg, run.bundle_dir, run.val_loader, run.data, run.device)
    barrier(run.info)
    cleanup(run.info)
    return FitResult(
        out_dir=run.out_dir,
        bundle_dir=run.bundle_dir if run.bundle_dir.exists() else None,
        best_map50=progress.best_map50,
        epochs_run=epoch + 1,
        history=progress.history,
    )


def _epoch_line(row: dict[str, Any]) -> str:
    parts = [f"epoch {row['epoch']}", f"train_loss {row['train_loss']:.4f}"]
    for key in ("val_loss", "map50", "map50_95"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"{row['train_seconds']:.0f}s")
    return " | ".join(parts)


def _save_bundle(
    cfg: TrainConfig,
    model: nn.Module,
    data: PreparedData,
    result: EvalResult,
    bundle_dir: Path,
    epoch: int,
    train_seconds: float,
) -> None:
    metrics = {"split": "val", "epoch": epoch, **result.to_dict()}
    save_bundle(
        bundle_dir,
        model,
        model_config=cfg.model,
        class_names=data.class_names,
        version=f"{cfg.name}-e{epoch}",
        score_threshold=cfg.eval.conf_threshold,
        metrics=metrics,
        split=data.split_info,
        training={"epochs": epoch, "seconds": round(train_seconds, 1), "config": cfg.model_dump(mode="json")},
    )


def _final_report(
    cfg: TrainConfig, bundle_dir: Path, val_loader: DetectionLoader, data: PreparedData, device: torch.device
) -> None:
    """PR curves and confusion matrix of the best bundle on the validation split."""
    bundle = load_bundle(bundle_dir, device=device)
    result = evaluate_model(
        bundle.model,
        val_loader,
        records=data.val,
        class_names=data.class_names,
        device=device,
        conf_threshold=cfg.eval.conf_threshold,
    )
    plot_pr_curves(result, bundle_dir.parent / "pr_curves.png")
    plot_confusion_matrix(result, bundle_dir.parent / "confusion_matrix.png")
    write_json(bundle_dir.parent / "val_metrics.json", result.to_dict())
