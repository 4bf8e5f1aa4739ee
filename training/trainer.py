"""One trainer for every detector family: the model's contract (loss dict in train mode, detections in
eval mode) is all it knows. ``train_one_epoch`` and ``predict`` are plain functions; ``fit`` wires
data, model, optimizer, EMA, checkpoints, early stopping, logs and plots together."""

from __future__ import annotations

import csv
import math
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from datasets.augment import build_transform, reseed_transform
from datasets.torch_dataset import DetectionDataset, collate_detection, seed_worker
from training.bundle import save_bundle
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import PreparedData, prepare_data, write_json
from training.distributed import DistInfo, barrier, broadcast_flag, cleanup, init_distributed
from training.ema import ModelEMA, unwrap
from training.evaluation import EvalResult, Prediction, evaluate, ground_truth_from_records
from training.optim import build_optimizer, build_scheduler
from training.registry import build_model


class NonFiniteLossError(RuntimeError):
    """Training diverged; stopping beats writing NaN weights into a bundle."""


@dataclass
class FitResult:
    out_dir: Path
    bundle_dir: Path | None
    best_map50: float
    epochs_run: int
    history: list[dict[str, Any]]


def pick_device(kind: str) -> torch.device:
    if kind == "cuda" or (kind == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int, *, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def _to_device(images: torch.Tensor, targets: list[dict], device: torch.device, channels_last: bool):
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
    loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    ema: ModelEMA | None = None,
    grad_clip: float | None = None,
    amp: bool = False,
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
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
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
def validation_loss(model: nn.Module, loader: Iterable, *, device: torch.device) -> float:
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
    model: nn.Module, loader: Iterable, *, device: torch.device, amp: bool = False
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
    loader: DataLoader,
    *,
    records,
    class_names: list[str],
    device: torch.device,
    conf_threshold: float,
    iou_threshold: float = 0.5,
) -> EvalResult:
    preds = predict(model, loader, device=device)
    gts = ground_truth_from_records(records, class_names)
    return evaluate(gts, preds, class_names, conf_threshold=conf_threshold, iou_threshold=iou_threshold)


def _loaders(cfg: TrainConfig, data: PreparedData, info: DistInfo, device: torch.device):
    size, chans = cfg.model.image_size, cfg.model.in_channels
    train_tf = build_transform(cfg.data.augment, image_size=size, train=True, seed=cfg.train.seed)
    eval_tf = build_transform(None, image_size=size, train=False)
    train_ds = DetectionDataset(
        data.train, data.class_names, image_size=size, in_channels=chans, transform=train_tf
    )
    val_ds = DetectionDataset(
        data.val, data.class_names, image_size=size, in_channels=chans, transform=eval_tf
    )
    per_rank = max(1, cfg.train.batch_size // info.world_size)
    if info.enabled:
        sampler = DistributedSampler(
            train_ds,
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=cfg.train.seed,
            drop_last=True,
        )
    else:
        sampler = RandomSampler(train_ds, generator=torch.Generator().manual_seed(cfg.train.seed))
    pin = device.type == "cuda"
    common = {
        "collate_fn": collate_detection,
        "num_workers": cfg.train.workers,
        "pin_memory": pin,
        "worker_init_fn": seed_worker,
        "persistent_workers": cfg.train.workers > 0,
    }
    train_loader = DataLoader(
        train_ds, batch_size=per_rank, sampler=sampler, drop_last=len(train_ds) > per_rank, **common
    )
    val_loader = DataLoader(val_ds, batch_size=cfg.eval.batch_size, shuffle=False, **common)
    return train_ds, train_loader, val_loader


def _set_epoch(loader: DataLoader, dataset: DetectionDataset, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s order and augmentations a pure function of (seed, epoch): exact resume."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler) and sampler.generator is not None:
        sampler.generator.manual_seed(seed + epoch)
    if dataset.transform is not None:
        reseed_transform(dataset.transform, seed * 1000 + epoch)


def _write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    write_json(out_dir / "metrics.json", history)
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    with open(out_dir / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    try:
        from training.plots import plot_training_curves

        plot_training_curves(history, out_dir / "training_curves.png")
    except Exception as exc:  # a plot must never kill a long run
        print(f"warning: could not plot training curves: {exc}")


def fit(cfg: TrainConfig, *, resume: bool = False) -> FitResult:
    """Train ``cfg``; rank 0 writes ``out_dir/{last.pt, metrics.*, split.json, bundle/}``."""
    device = pick_device(cfg.train.device)
    info = init_distributed(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    out_dir = Path(cfg.train.out_dir)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")
    barrier(info)
    data = prepare_data(cfg.data, out_dir=out_dir, write=info.is_main)
    train_ds, train_loader, val_loader = _loaders(cfg, data, info, device)
    use_cuda = device.type == "cuda"
    amp = cfg.train.amp and use_cuda
    channels_last = cfg.train.channels_last and use_cuda

    model = build_model(cfg.model, num_classes=len(data.class_names)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model) if use_cuda else model
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
    optimizer = build_optimizer(cfg.train.optimizer, model)
    steps_per_epoch = len(train_loader)
    if cfg.train.max_steps:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_steps)
    total_steps = steps_per_epoch * cfg.train.epochs
    warmup = min(int(cfg.train.schedule.warmup_epochs * steps_per_epoch), total_steps // 2)
    scheduler = build_scheduler(
        optimizer, total_steps=total_steps, warmup_steps=warmup, cfg=cfg.train.schedule
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    ema = ModelEMA(model, decay=cfg.train.ema.decay, tau=cfg.train.ema.tau) if cfg.train.ema.enabled else None

    start_epoch, best_map50, stale, history, train_seconds = 0, -1.0, 0, [], 0.0
    ckpt_path = out_dir / "last.pt"
    if resume:
        state = load_checkpoint(
            ckpt_path, model=unwrap(model), optimizer=optimizer, scheduler=scheduler, scaler=scaler, ema=ema
        )
        start_epoch, best_map50, stale = state["epoch"] + 1, state["best_map50"], state["stale"]
        history, train_seconds = state["history"], state["train_seconds"]
        if info.is_main:
            print(f"resumed from {ckpt_path} at epoch {start_epoch}")

    bundle_dir = out_dir / "bundle"
    eval_model = ema.module if ema is not None else unwrap(model)
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.train.epochs):
        _set_epoch(train_loader, train_ds, cfg.train.seed, epoch)
        started = time.perf_counter()
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not info.is_main or not sys.stderr.isatty(),  # no bars in logs and cron mail
            dynamic_ncols=True,
            leave=False,
        )
        losses = train_one_epoch(
            model,
            train_loader,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            device=device,
            ema=ema,
            grad_clip=cfg.train.grad_clip,
            amp=amp,
            channels_last=channels_last,
            max_steps=cfg.train.max_steps,
            progress=bar,
            freeze_bn_stats=cfg.train.freeze_bn_stats,
        )
        bar.close()
        train_seconds += time.perf_counter() - started
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": scheduler.get_last_lr()[0],
            "train_seconds": round(train_seconds, 1),
            **{f"train_{k}" if k != "loss" else "train_loss": v for k, v in losses.items()},
        }
        stop = False
        if info.is_main:
            is_eval_epoch = (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs
            if is_eval_epoch:
                row["val_loss"] = validation_loss(eval_model, val_loader, device=device)
                result = evaluate_model(
                    eval_model,
                    val_loader,
                    records=data.val,
                    class_names=data.class_names,
                    device=device,
                    conf_threshold=cfg.eval.conf_threshold,
                )
                row.update(map50=result.map50, map50_95=result.map50_95)
                score = -1.0 if math.isnan(result.map50) else result.map50
                if score > best_map50:
                    best_map50, stale = score, 0
                    _save_bundle(cfg, eval_model, data, result, bundle_dir, epoch + 1, train_seconds)
                else:
                    stale += 1
                stop = cfg.train.patience is not None and stale >= cfg.train.patience
            history.append(row)
            _write_history(out_dir, history)
            save_checkpoint(
                ckpt_path,
                model=unwrap(model),
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                ema=ema,
                epoch=epoch,
                best_map50=best_map50,
                stale=stale,
                history=history,
                train_seconds=train_seconds,
                config=cfg.model_dump(mode="json"),
            )
            print(_epoch_line(row), flush=True)
        if broadcast_flag(stop, info):
            if info.is_main:
                print(f"early stop: no val mAP@0.5 gain for {stale} evaluations")
            break
    if info.is_main and bundle_dir.exists():
        _final_report(cfg, bundle_dir, val_loader, data, device)
    barrier(info)
    cleanup(info)
    return FitResult(
        out_dir=out_dir,
        bundle_dir=bundle_dir if bundle_dir.exists() else None,
        best_map50=best_map50,
        epochs_run=epoch + 1,
        history=history,
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
    cfg: TrainConfig, bundle_dir: Path, val_loader: DataLoader, data: PreparedData, device: torch.device
) -> None:
    """PR curves and confusion matrix of the best bundle on the validation split."""
    from training.bundle import load_bundle
    from training.plots import plot_confusion_matrix, plot_pr_curves

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
