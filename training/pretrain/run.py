"""``steel pretrain``: masked-image pretraining of a YOLO backbone on a split's training images.

Every epoch's randomness (shuffle, augmentation, masks) is seeded from ``(seed, epoch)``, so a run resumed
from ``last.pt`` (model, optimiser, epoch, losses; ``torch.load(weights_only=True)``) continues exactly.
Writes ``backbone.safetensors`` (tensors named as in the detector, so ``model.yolo.weights`` loads them and
leaves the head at its initialisation) and ``pretrain.json`` (config, images, loss per epoch).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from safetensors.torch import save_file
from torch.utils.data import DataLoader, RandomSampler

from datasets.augment import build_transform, reseed_transform
from datasets.settings import StrictModel
from datasets.torch_dataset import DetectionDataset, collate_detection
from training.config import DataConfig, ModelConfig
from training.data import prepare_data, write_json
from training.fit_setup import pick_device
from training.pretrain.masked import MaskedImageModel, mask_patches, masked_l1

BACKBONE_FILE = "backbone.safetensors"


class PretrainConfig(StrictModel):
    name: str = Field("pretrain", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelConfig = ModelConfig()  # family yolo: its size, image_size and in_channels are used
    data: DataConfig = DataConfig()  # the training side of the split (and its background tiles)
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    mask_ratio: float = Field(0.5, gt=0, lt=1)
    patch_px: int = Field(16, ge=2)
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out_dir: str = "runs/pretrain"


@dataclasses.dataclass
class PretrainResult:
    out_dir: Path
    losses: list[float]


def pretrain(cfg: PretrainConfig, *, resume: bool = False) -> PretrainResult:
    """Train for ``cfg.epochs`` epochs (from ``last.pt`` with ``resume``); the backbone file at the end."""
    if cfg.model.family != "yolo":
        raise ValueError(f"model.family: {cfg.model.family!r}; pretraining is for the yolo backbone")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(cfg.data, out_dir=out)
    unlabelled = [dataclasses.replace(rec, boxes=()) for rec in data.train]
    transform = build_transform(cfg.data.augment, image_size=cfg.model.image_size, train=True, seed=cfg.seed)
    dataset = DetectionDataset(
        unlabelled, data.class_names, image_size=cfg.model.image_size,
        in_channels=cfg.model.in_channels, transform=transform,
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    model = MaskedImageModel(size=cfg.model.yolo.size, in_channels=cfg.model.in_channels).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = _resume(out / "last.pt", model, optimizer, device) if resume else []
    for epoch in range(len(losses), cfg.epochs):
        losses.append(_epoch(cfg, model, optimizer, dataset, epoch))
        print(f"pretrain epoch {epoch + 1} | masked L1 {losses[-1]:.4f}", flush=True)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "losses": losses}
        torch.save(state, out / "last.pt.tmp")
        (out / "last.pt.tmp").replace(out / "last.pt")
    save_file(model.backbone_state(), str(out / BACKBONE_FILE))
    report: dict[str, Any] = {
        "config": cfg.model_dump(mode="json"),
        "images": len(unlabelled),
        "split": data.split_info,
        "masked_l1_per_epoch": losses,
    }
    write_json(out / "pretrain.json", report)
    return PretrainResult(out, losses)


def _resume(
    path: Path, model: MaskedImageModel, optimizer: torch.optim.Optimizer, device: torch.device
) -> list[float]:
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return [float(v) for v in state["losses"]]


def _epoch(
    cfg: PretrainConfig,
    model: MaskedImageModel,
    optimizer: torch.optim.Optimizer,
    dataset: DetectionDataset,
    epoch: int,
) -> float:
    """One epoch at the cosine-scheduled learning rate; the mean masked L1 of its batches."""
    epoch_seed = cfg.seed * 1000 + epoch
    reseed_transform(dataset.transform, epoch_seed)
    order = torch.Generator().manual_seed(epoch_seed)
    masks = torch.Generator().manual_seed(epoch_seed + 1)
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, sampler=RandomSampler(dataset, generator=order),
        collate_fn=collate_detection, drop_last=len(dataset) > cfg.batch_size,
    )  # fmt: skip
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
    model.train()
    total, batches = 0.0, 0
    device = next(model.parameters()).device
    for cpu_images, _ in loader:
        masked, mask = mask_patches(cpu_images, patch=cfg.patch_px, ratio=cfg.mask_ratio, generator=masks)
        images, masked, mask = images_to(device, cpu_images, masked, mask)
        loss = masked_l1(model(masked), images, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, batches = total + float(loss.detach()), batches + 1
    return total / max(batches, 1)


def images_to(device: torch.device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors on ``device`` (masks are drawn on the CPU, so a run's masks do not depend on it)."""
    return tuple(t.to(device, non_blocking=True) for t in tensors)
