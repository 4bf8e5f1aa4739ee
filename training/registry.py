"""Build a detector from the model config: the only place that knows which families exist."""

from __future__ import annotations

from torch import nn

from training.config import ModelConfig
from training.models.faster_rcnn import build_faster_rcnn
from training.models.yolo.model import build_yolo


def build_model(cfg: ModelConfig, *, num_classes: int) -> nn.Module:
    if cfg.family == "yolo":
        return build_yolo(
            cfg.yolo, num_classes=num_classes, in_channels=cfg.in_channels, image_size=cfg.image_size
        )
    return build_faster_rcnn(
        cfg.faster_rcnn, num_classes=num_classes, in_channels=cfg.in_channels, image_size=cfg.image_size
    )
