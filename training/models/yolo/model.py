"""The YOLO detector: backbone+neck, head, loss and postprocess composed behind the same contract as
torchvision's detectors, so one trainer and one evaluator never ask which model they hold.

Train mode: ``model(images, targets) -> {"box", "cls", "dfl"}`` losses.
Eval mode: ``model(images) -> [{"boxes" (K,4) xyxy pixels, "scores" (K,), "labels" (K,)}]`` per image.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from pydantic import Field
from torch import nn

from datasets.settings import StrictModel
from datasets.torch_dataset import Target
from training.models.yolo.backbone import BackboneNeck
from training.models.yolo.head import DetectHead, HeadOutput
from training.models.yolo.loss import YoloLoss
from training.models.yolo.postprocess import decode_predictions, postprocess
from training.weights import load_local_weights

# (depth multiplier, width multiplier, max channels) per size, after YOLOv8's scaling table.
SCALES: dict[str, tuple[float, float, int]] = {
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 768),
}
STRIDES = (8, 16, 32)
P2_STRIDES = (4, *STRIDES)


class YoloConfig(StrictModel):
    size: Literal["n", "s", "m"] = "n"
    reg_max: int = Field(16, ge=4, le=32)
    box_gain: float = Field(7.5, gt=0)
    cls_gain: float = Field(0.5, gt=0)
    dfl_gain: float = Field(1.5, gt=0)
    assigner_topk: int = Field(10, ge=1)
    nms_iou: float = Field(0.6, gt=0, le=1)
    score_threshold: float = Field(0.001, ge=0, lt=1)
    max_detections: int = Field(300, ge=1)
    weights: str | None = None  # a local state-dict file to start from; never downloaded
    p2: bool = False  # a stride-4 level in the neck and head (fine texture, small defects): 4x the anchors

    @property
    def strides(self) -> tuple[int, ...]:
        return P2_STRIDES if self.p2 else STRIDES


class SoftTeacher(Protocol):
    """What distillation adds to the student's losses (``training.distill.DenseTeacher``)."""

    def losses(
        self, images: torch.Tensor, student: HeadOutput, boxed: torch.Tensor
    ) -> dict[str, torch.Tensor]: ...


def as_yolo(model: nn.Module) -> YOLO:
    """``model`` as our YOLO network (what a bundle of the yolo family holds), else a TypeError."""
    if not isinstance(model, YOLO):
        raise TypeError(f"expected the yolo network, got {type(model).__name__}")
    return model


class YOLO(nn.Module):
    def __init__(self, cfg: YoloConfig, *, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        depth, width, max_channels = SCALES[cfg.size]
        self.cfg = cfg
        self.num_classes = num_classes
        self.image_size = image_size
        self.backbone = BackboneNeck(
            in_channels=in_channels, width_mult=width, depth_mult=depth, max_channels=max_channels, p2=cfg.p2
        )
        self.head = DetectHead(
            num_classes=num_classes,
            in_channels=self.backbone.out_channels,
            strides=cfg.strides,
            reg_max=cfg.reg_max,
        )
        self.head.init_biases(image_size)
        self.teacher: SoftTeacher | None = None  # a plain attribute: never in state_dict or parameters
        self.loss = YoloLoss(
            num_classes=num_classes,
            reg_max=cfg.reg_max,
            box_gain=cfg.box_gain,
            cls_gain=cfg.cls_gain,
            dfl_gain=cfg.dfl_gain,
            topk=cfg.assigner_topk,
        )

    def raw(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (B, A, 4) in pixels and class probabilities (B, A, C), before NMS (the ONNX graph)."""
        return decode_predictions(self.head(self.backbone(images)), self.cfg.reg_max)

    def forward(
        self, images: torch.Tensor, targets: list[Target] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Losses in train mode; per-image boxes, scores and labels after NMS in eval mode."""
        out = self.head(self.backbone(images))
        if self.training:
            if targets is None:
                raise ValueError("YOLO in train mode needs targets")
            losses = self.loss(out, targets)
            if self.teacher is not None:
                boxed = torch.tensor([len(t["boxes"]) > 0 for t in targets], device=images.device)
                losses.update(self.teacher.losses(images, out, boxed))
            return losses
        boxes, scores = decode_predictions(out, self.cfg.reg_max)
        return postprocess(
            boxes,
            scores,
            image_hw=(images.shape[2], images.shape[3]),
            conf_threshold=self.cfg.score_threshold,
            iou_threshold=self.cfg.nms_iou,
            max_detections=self.cfg.max_detections,
        )


def build_yolo(cfg: YoloConfig, *, num_classes: int, in_channels: int, image_size: int) -> YOLO:
    if image_size % max(STRIDES):
        raise ValueError(f"model.image_size: {image_size} is not a multiple of {max(STRIDES)}")
    model = YOLO(cfg, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    if cfg.weights:
        load_local_weights(model, cfg.weights)
    return model
