"""How ``fit`` is set up: device and process group, seeds, data and loaders, model, optimizer, schedule,
scaler and EMA, in one fixed order, and the state a checkpoint restores (exact resume)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from datasets.augment import build_transform
from datasets.torch_dataset import DetectionDataset, Target, collate_detection, seed_worker
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data import PreparedData, prepare_data
from training.distill import load_teacher
from training.distributed import DistInfo, barrier, init_distributed
from training.ema import ModelEMA, unwrap
from training.models.yolo.model import as_yolo
from training.optim import build_optimizer, build_scheduler
from training.registry import build_model

log = logging.getLogger("steel.train")


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


DetectionLoader = DataLoader[tuple[torch.Tensor, Target]]  # yields collate_detection's batches


def build_loaders(
    cfg: TrainConfig, data: PreparedData, info: DistInfo, device: torch.device
) -> tuple[DetectionDataset, DetectionLoader, DetectionLoader]:
    size, chans = cfg.model.image_size, cfg.model.in_channels
    train_tf = build_transform(cfg.data.augment, image_size=size, train=True, seed=cfg.train.seed)
    eval_tf = build_transform(None, image_size=size, train=False)
    augment = cfg.data.augment
    train_ds = DetectionDataset(
        data.train,
        data.class_names,
        image_size=size,
        in_channels=chans,
        transform=train_tf,
        copy_paste=(augment.copy_paste_p if augment.enabled else 0.0, augment.copy_paste_max),
    )
    val_ds = DetectionDataset(
        data.val, data.class_names, image_size=size, in_channels=chans, transform=eval_tf
    )
    per_rank = max(1, cfg.train.batch_size // info.world_size)
    sampler: Sampler[int]
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
    train_loader = _loader(
        train_ds, cfg, pin, batch_size=per_rank, sampler=sampler, drop_last=len(train_ds) > per_rank
    )
    val_loader = _loader(val_ds, cfg, pin, batch_size=cfg.eval.batch_size)
    return train_ds, train_loader, val_loader


def fresh_train_loader(run: Run) -> DetectionLoader:
    """The training loader again, same sampler and batches, with new workers: persistent workers hold
    copies of the data set made when they started, so a switch of its augmentation reaches them only so."""
    old = run.train_loader
    assert isinstance(old.sampler, Sampler)  # build_loaders gave it a RandomSampler or DistributedSampler
    pin = run.device.type == "cuda"
    return _loader(
        run.train_ds,
        run.cfg,
        pin,
        batch_size=old.batch_size or 1,
        sampler=old.sampler,
        drop_last=old.drop_last,
    )


def _loader(
    ds: DetectionDataset,
    cfg: TrainConfig,
    pin: bool,
    *,
    batch_size: int,
    sampler: Sampler[int] | None = None,
    drop_last: bool = False,
) -> DetectionLoader:
    """The options train and validation loaders share; without a sampler, the data set's order."""
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        drop_last=drop_last,
        collate_fn=collate_detection,
        num_workers=cfg.train.workers,
        pin_memory=pin,
        worker_init_fn=seed_worker,
        persistent_workers=cfg.train.workers > 0,
    )


@dataclass
class Run:
    """Everything one ``fit`` wires together, built in a fixed order (the RNG draws of model
    initialisation and data set-up must happen in the same order on a fresh start and on resume)."""

    cfg: TrainConfig
    device: torch.device
    info: DistInfo
    out_dir: Path
    data: PreparedData
    train_ds: DetectionDataset
    train_loader: DetectionLoader
    val_loader: DetectionLoader
    amp_dtype: torch.dtype | None  # the training step's autocast dtype; None: float32
    channels_last: bool
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    steps_per_epoch: int

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else unwrap(self.model)

    @property
    def bundle_dir(self) -> Path:
        return self.out_dir / "bundle"

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.pt"


@dataclass
class Progress:
    """What the loop carries from epoch to epoch, and what a checkpoint restores."""

    start_epoch: int = 0
    best_map50: float = -1.0
    stale: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0


def start(cfg: TrainConfig) -> tuple[torch.device, DistInfo, Path]:
    """Device, process group, threads and seeds; rank 0 creates ``out_dir`` and writes the config."""
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
    return device, info, out_dir


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """fp16 on CUDA with ``train.amp``; bf16 on CPU with ``train.cpu_precision: bf16`` (a warning where the
    CPU has no native bf16: it runs, emulated, slower than fp32); else None (float32)."""
    if device.type == "cuda":
        return torch.float16 if cfg.train.amp else None
    if cfg.train.cpu_precision != "bf16":
        return None
    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log.warning("train.cpu_precision: bf16: this CPU has no native bf16; steps will be slower than fp32")
    return torch.bfloat16


def build_run(cfg: TrainConfig) -> Run:
    """Data, loaders, model (DDP-wrapped when distributed), optimizer, schedule, scaler and EMA."""
    device, info, out_dir = start(cfg)
    data = prepare_data(cfg.data, out_dir=out_dir, write=info.is_main)
    train_ds, train_loader, val_loader = build_loaders(cfg, data, info, device)
    use_cuda = device.type == "cuda"
    amp_dtype = autocast_dtype(cfg, device)
    channels_last = cfg.train.channels_last and (use_cuda or amp_dtype is not None)  # CPU: with bf16 only

    model = build_model(cfg.model, num_classes=len(data.class_names)).to(device)
    if cfg.train.distill.teachers:
        student = as_yolo(model)
        student.teacher = load_teacher(cfg.train.distill, student, list(data.class_names), device)
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
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)  # bf16 needs no scaling
    ema = ModelEMA(model, decay=cfg.train.ema.decay, tau=cfg.train.ema.tau) if cfg.train.ema.enabled else None
    return Run(
        cfg=cfg, device=device, info=info, out_dir=out_dir, data=data, train_ds=train_ds,
        train_loader=train_loader, val_loader=val_loader, amp_dtype=amp_dtype, channels_last=channels_last,
        model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, ema=ema,
        steps_per_epoch=steps_per_epoch,
    )  # fmt: skip


def resume_progress(run: Run) -> Progress:
    """Model, optimizer, schedule, scaler, EMA and RNG states from ``last.pt``: the run goes on exactly."""
    state = load_checkpoint(
        run.checkpoint_path,
        model=unwrap(run.model),
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        scaler=run.scaler,
        ema=run.ema,
    )
    if run.info.is_main:
        print(f"resumed from {run.checkpoint_path} at epoch {state['epoch'] + 1}")
    return Progress(
        start_epoch=state["epoch"] + 1,
        best_map50=state["best_map50"],
        stale=state["stale"],
        history=state["history"],
        train_seconds=state["train_seconds"],
    )
