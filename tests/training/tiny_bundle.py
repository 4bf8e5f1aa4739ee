"""A small real bundle for tests that need one on disk: a YOLO-n at 64 px, seeded, saved by
:func:`training.bundle.save_bundle` exactly as training saves one (untrained: its scores are low but
deterministic, which is all the manifest, threshold and ensemble tests need)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from datasets.model import NEU_DET_CLASSES
from training.bundle import MANIFEST, save_bundle
from training.config import ModelConfig
from training.models.yolo.model import YoloConfig, build_yolo
from training.registry import build_model

SIZE = 64


def tiny_yolo_bundle(
    out_dir: Path, *, seed: int = 0, size: int = SIZE, score: float = 0.25, p2: bool = False
) -> Path:
    torch.manual_seed(seed)
    cfg = YoloConfig(p2=p2)
    model = build_yolo(cfg, num_classes=len(NEU_DET_CLASSES), in_channels=1, image_size=size).eval()
    return save_bundle(
        out_dir,
        model,
        model_config=ModelConfig(family="yolo", image_size=size, in_channels=1, yolo=cfg),
        class_names=list(NEU_DET_CLASSES),
        version=f"tiny-seed{seed}",
        score_threshold=score,
    )


def edit_manifest(bundle_dir: Path, **changes: Any) -> dict[str, Any]:
    """Set top-level manifest keys (a value ``...`` deletes the key); returns the new manifest."""
    path = bundle_dir / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is ...:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def tiny_faster_rcnn_bundle(out_dir: Path, *, seed: int = 0, size: int = 96) -> Path:
    """An untrained MobileNetV3-FPN Faster R-CNN bundle (the other family an ensemble may mix in)."""
    torch.manual_seed(seed)
    config = ModelConfig(family="faster_rcnn", image_size=size, in_channels=1)
    model = build_model(config, num_classes=len(NEU_DET_CLASSES)).eval()
    return save_bundle(
        out_dir,
        model,
        model_config=config,
        class_names=list(NEU_DET_CLASSES),
        version=f"tiny-frcnn-seed{seed}",
        score_threshold=0.05,
    )
