"""Faster R-CNN for NEU-DET, built from torchvision parts and trained from scratch.

torchvision's ``FasterRCNN`` does the detection work; this module only picks the parts that suit small
grayscale steel images and wraps the model in the project's detector contract, shared with our YOLO so the
trainer and evaluator never ask which model they hold:

- ``model(images (B,C,H,W) float in [0, 1], targets)``; each target is ``{boxes (N,4) float xyxy pixels,
  labels (N,) int64 0-based class index}``; an image with zero boxes is legal.
- train mode returns a dict of scalar losses (the trainer sums them); eval mode returns one
  ``{boxes (M,4) xyxy pixels of the input image, scores (M,), labels (M,) 0-based}`` per image.
- torchvision keeps label 0 for background, so class ``i`` is torchvision label ``i + 1``; the wrapper shifts
  labels on the way in and out.

Choices for from-scratch training on 200x200 images:

- No downloads, ever: torchvision builders get ``weights=None``; ``weights`` / ``weights_backbone`` are local
  state-dict files read with ``torch.load(weights_only=True)`` (or safetensors).
- ``in_channels=1`` builds the stem convolution with one input channel instead of repeating the gray channel
  three times: same result as a 3-channel stem on R == G == B input, a third of the stem's work and weights.
  A 3-channel ImageNet backbone file is folded into it by summing its stem filters over the colour axis.
- GroupNorm (default) in the backbone and the FPN: batches of 8 are too small for BatchNorm statistics and
  GN is what makes detectors train well from scratch (He et al., "Rethinking ImageNet Pre-training", 2019).
- No resizing: ``min_size = max_size = image_size`` unless configured, so a 200 px image stays 200 px
  (torchvision's default would upscale it to 800).
- Feature maps at strides 4-64 for ResNets (torchvision's layout) and 8-64 for MobileNetV3, whose stock
  torchvision FPN only sees stride 32 (a 7x7 map on a 200 px image, too coarse for 8 px defects).
- Anchors 16-256 px (16-192 px on MobileNetV3's four maps) with aspect ratios 0.25-4, for boxes of
  8-199 px and long thin scratches.

Measured speed (200 px, batch 8, ``torch.set_num_threads(2)``, 2-core CPU while otherwise idle, defaults of
``FasterRCNNConfig``; SGD steps after warm-up): mobilenet_v3_fpn ~3.7 img/s training, ~11 img/s inference;
resnet18_fpn ~2.0 img/s training, ~7 img/s inference. Sharing the cores with another training job made both
5-10x slower. In training, RoIAlign's backward pass and the box head's 12544x1024 FC layer take about half
the time; ``representation_size`` trades that head's width for speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from safetensors.torch import load_file
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet50
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from datasets.settings import StrictModel

Backbone = Literal["resnet18_fpn", "resnet50_fpn", "mobilenet_v3_fpn"]

# MobileNetV3-Large ``features`` indices that end a stage (strides 8, 16, 32) and their channel counts.
_MOBILENET_RETURN = {"6": "0", "12": "1", "16": "2"}
_MOBILENET_CHANNELS = [40, 112, 960]
# First ``features`` index of each MobileNetV3-Large stage, for freezing all but the last k stages.
_MOBILENET_STAGE_STARTS = [0, 2, 4, 7, 13, 16]
_MAX_TRAINABLE = {"resnet18_fpn": 5, "resnet50_fpn": 5, "mobilenet_v3_fpn": len(_MOBILENET_STAGE_STARTS)}
_DEFAULT_ANCHORS: dict[str, tuple[tuple[int, ...], ...]] = {
    # strides 4, 8, 16, 32, 64
    "resnet18_fpn": ((16,), (32,), (64,), (128,), (256,)),
    "resnet50_fpn": ((16,), (32,), (64,), (128,), (256,)),
    # strides 8, 16, 32, 64: two sizes per level to cover 16-256 px with four maps
    "mobilenet_v3_fpn": ((16, 24), (32, 48), (64, 96), (128, 192)),
}
_FPN_OUT_CHANNELS = 256


class FasterRCNNConfig(StrictModel):
    """Faster R-CNN architecture and sampling; defaults suit 200 px NEU-DET images trained from scratch."""

    backbone: Backbone = "mobilenet_v3_fpn"
    norm: Literal["group", "batch"] = "group"
    trainable_backbone_layers: int | None = Field(
        default=None, ge=0, le=6, description="None: all layers train (always the case from scratch)."
    )
    min_size: int | None = Field(default=None, gt=0, description="None: the dataset's image_size.")
    max_size: int | None = Field(default=None, gt=0, description="None: the dataset's image_size.")
    image_mean: tuple[float, ...] = Field(default=(0.5,), min_length=1, max_length=3)
    image_std: tuple[float, ...] = Field(default=(0.25,), min_length=1, max_length=3)
    anchor_sizes: tuple[tuple[int, ...], ...] | None = Field(
        default=None, description="One tuple per feature map; None: the backbone's default."
    )
    aspect_ratios: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    rpn_pre_nms_top_n_train: int = Field(default=1000, gt=0)
    rpn_post_nms_top_n_train: int = Field(default=600, gt=0)
    rpn_pre_nms_top_n_test: int = Field(default=500, gt=0)
    rpn_post_nms_top_n_test: int = Field(default=300, gt=0)
    rpn_batch_size_per_image: int = Field(default=128, gt=0)
    box_batch_size_per_image: int = Field(default=128, gt=0)
    box_detections_per_img: int = Field(default=100, gt=0)
    box_score_thresh: float = Field(default=0.001, ge=0.0, lt=1.0)
    box_nms_thresh: float = Field(default=0.5, gt=0.0, le=1.0)
    representation_size: int = Field(
        default=1024, gt=0, description="Width of the box head's two FC layers (torchvision: 1024)."
    )
    weights: str | None = Field(default=None, description="Local state-dict file of the whole detector.")
    weights_backbone: str | None = Field(
        default=None,
        description="Local state dict of the torchvision classifier; ignored when weights is set.",
    )


class FasterRCNNDetector(nn.Module):
    """torchvision ``FasterRCNN`` behind the project's detector contract (0-based labels, batch tensor)."""

    def __init__(self, detector: FasterRCNN, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.detector = detector
        self.num_classes = num_classes
        self.in_channels = in_channels

    def forward(
        self, images: Tensor, targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Losses in train mode, detections in eval mode.

        Args:
            images: (B, C, H, W) float in [0, 1], C == ``in_channels``.
            targets: per image ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,) 0-based; needed in train mode.

        Returns:
            Train mode: ``{loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg}`` scalars.
            Eval mode: per image ``{boxes (M, 4), scores (M,), labels (M,) 0-based}``.
        """
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(images.shape)}"
            )
        shifted = None
        if targets is not None:
            shifted = [
                {
                    "boxes": t["boxes"].reshape(-1, 4).to(images.dtype),
                    "labels": t["labels"].to(torch.int64) + 1,
                }
                for t in targets
            ]
        out = self.detector(list(images.unbind(0)), shifted)
        if self.training:
            losses: dict[str, Tensor] = out  # torchvision (untyped): losses in train mode
            return losses
        detections: list[dict[str, Tensor]] = out  # and per-image detections in eval mode
        return [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] - 1} for d in detections]


def _group_norm(num_channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups: MobileNetV3 has 16-, 24- and 40-channel layers."""
    return nn.GroupNorm(math.gcd(32, num_channels), num_channels)


def _read_state_dict(path: str, what: str) -> dict[str, Tensor]:
    """A state dict from a local file; never a download."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"Faster R-CNN {what} file not found: {file}")
    if file.suffix == ".safetensors":
        return load_file(str(file))
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{file}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def _load(module: nn.Module, state: dict[str, Tensor], *, path: str, what: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: {what} does not fit the configured model: {exc}") from None


def _stem(classifier: nn.Module) -> tuple[nn.Module, str]:
    """The first convolution's parent module and attribute name."""
    if hasattr(classifier, "conv1"):
        return classifier, "conv1"
    return _mobilenet_features(classifier)[0], "0"  # MobileNetV3: Conv2dNormActivation, its conv is "0"


def _mobilenet_features(classifier: nn.Module) -> nn.Sequential:
    """MobileNetV3's feature stack (torchvision builds it as a Sequential)."""
    features = classifier.get_submodule("features")
    if not isinstance(features, nn.Sequential):
        raise TypeError(f"expected MobileNetV3's features to be a Sequential, got {type(features).__name__}")
    return features


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's size attribute (torch types it ``tuple[int, ...]``; a 2-D convolution holds two)."""
    first, second = values
    return first, second


def _set_in_channels(classifier: nn.Module, in_channels: int) -> None:
    """Rebuild the stem convolution for ``in_channels`` inputs, initialised like the original."""
    parent, name = _stem(classifier)
    old: nn.Conv2d = getattr(parent, name)
    if old.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=_pair(old.kernel_size),
        stride=_pair(old.stride),
        padding=old.padding if isinstance(old.padding, str) else _pair(old.padding),
        bias=old.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    setattr(parent, name, new)


def _load_backbone(classifier: nn.Module, path: str) -> None:
    """Load a torchvision classifier state dict, folding a 3-channel stem into a 1-channel one."""
    state = _read_state_dict(path, "weights_backbone")
    parent, name = _stem(classifier)
    prefix = "conv1." if name == "conv1" else "features.0.0."
    stem = state.get(prefix + "weight")
    wanted = getattr(parent, name).in_channels
    if stem is not None and stem.shape[1] == 3 and wanted == 1:
        state = {**state, prefix + "weight": stem.sum(dim=1, keepdim=True)}
    _load(classifier, state, path=path, what="weights_backbone")


def _norm_layers(cfg: FasterRCNNConfig) -> tuple[Callable[..., nn.Module], Callable[..., nn.Module] | None]:
    """Norm layer for the backbone and for the FPN (None: torchvision's plain FPN convs)."""
    if cfg.norm == "group":
        return _group_norm, _group_norm
    if cfg.backbone == "mobilenet_v3_fpn":
        return partial(nn.BatchNorm2d, eps=0.001, momentum=0.01), None  # torchvision's MobileNetV3 setting
    return nn.BatchNorm2d, None


def _freeze_mobilenet(features: nn.Sequential, trainable: int) -> None:
    stages = _MOBILENET_STAGE_STARTS
    freeze_before = len(features) if trainable == 0 else stages[len(stages) - trainable]
    for block in features[:freeze_before]:
        block.requires_grad_(False)


def _build_backbone(cfg: FasterRCNNConfig, in_channels: int) -> BackboneWithFPN:
    norm, fpn_norm = _norm_layers(cfg)
    trainable = _MAX_TRAINABLE[cfg.backbone]
    if cfg.trainable_backbone_layers is not None:
        if cfg.trainable_backbone_layers > trainable:
            raise ValueError(
                f"trainable_backbone_layers: {cfg.trainable_backbone_layers} is more than {cfg.backbone} "
                f"has ({trainable})"
            )
        trainable = cfg.trainable_backbone_layers
    if cfg.backbone == "mobilenet_v3_fpn":
        classifier: nn.Module = mobilenet_v3_large(weights=None, norm_layer=norm)
    else:
        builder = resnet18 if cfg.backbone == "resnet18_fpn" else resnet50
        classifier = builder(weights=None, norm_layer=norm)
    _set_in_channels(classifier, in_channels)
    if cfg.weights_backbone is not None and cfg.weights is None:
        _load_backbone(classifier, cfg.weights_backbone)
    if cfg.backbone != "mobilenet_v3_fpn":  # torchvision's own ResNet-FPN assembly (pinned torchvision)
        return _resnet_fpn_extractor(classifier, trainable, norm_layer=fpn_norm)
    features = _mobilenet_features(classifier)
    _freeze_mobilenet(features, trainable)
    return BackboneWithFPN(
        features,
        _MOBILENET_RETURN,
        _MOBILENET_CHANNELS,
        _FPN_OUT_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=fpn_norm,
    )


def _expand(values: tuple[float, ...], in_channels: int, name: str) -> list[float]:
    if len(values) == 1:
        return list(values) * in_channels
    if len(values) != in_channels:
        raise ValueError(f"{name}: {len(values)} values for {in_channels} input channels")
    return list(values)


def build_faster_rcnn(
    cfg: FasterRCNNConfig, *, num_classes: int, in_channels: int, image_size: int
) -> FasterRCNNDetector:
    """Build a Faster R-CNN detector (random init unless ``cfg`` names local weight files).

    Args:
        cfg: architecture and sampling settings.
        num_classes: defect classes, background excluded (6 for NEU-DET).
        in_channels: 1 (grayscale) or 3.
        image_size: the side the dataset feeds, used when ``cfg.min_size`` / ``cfg.max_size`` are None.

    Raises:
        FileNotFoundError: a weights file does not exist.
        ValueError: a setting does not fit the backbone, or a weights file does not fit the model.
    """
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    anchor_sizes = cfg.anchor_sizes or _DEFAULT_ANCHORS[cfg.backbone]
    levels = len(_DEFAULT_ANCHORS[cfg.backbone])
    if len(anchor_sizes) != levels:
        raise ValueError(
            f"anchor_sizes: {cfg.backbone} has {levels} feature maps, got {len(anchor_sizes)} tuples"
        )
    if len({len(sizes) for sizes in anchor_sizes}) != 1:
        raise ValueError(
            "anchor_sizes: every feature map needs the same number of sizes (one shared RPN head)"
        )

    backbone = _build_backbone(cfg, in_channels)
    anchors = AnchorGenerator(anchor_sizes, (cfg.aspect_ratios,) * levels)
    roi_side = 7  # torchvision's default RoI size
    detector = FasterRCNN(
        backbone,
        # RoIs are pooled from every map but the extra max-pooled one, as torchvision does for ResNets.
        box_roi_pool=MultiScaleRoIAlign(
            [str(i) for i in range(levels - 1)], output_size=roi_side, sampling_ratio=2
        ),
        box_head=TwoMLPHead(_FPN_OUT_CHANNELS * roi_side**2, cfg.representation_size),
        box_predictor=FastRCNNPredictor(cfg.representation_size, num_classes + 1),  # + background
        min_size=cfg.min_size or image_size,
        max_size=cfg.max_size or image_size,
        image_mean=_expand(cfg.image_mean, in_channels, "image_mean"),
        image_std=_expand(cfg.image_std, in_channels, "image_std"),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_detections_per_img=cfg.box_detections_per_img,
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
    )
    model = FasterRCNNDetector(detector, num_classes=num_classes, in_channels=in_channels)
    if cfg.weights is not None:
        _load(model, _read_state_dict(cfg.weights, "weights"), path=cfg.weights, what="weights")
    return model
