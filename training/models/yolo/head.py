"""Decoupled anchor-free head: per level, a box branch predicting distributions over distances
(left, top, right, bottom) and a class branch predicting per-class logits, for every grid cell."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from training.models.yolo.blocks import ConvBNAct


@dataclass(frozen=True)
class HeadOutput:
    """Flattened predictions over all ``A`` anchor points of all levels.

    pred_dist: (B, A, 4 * reg_max) logits of the distance distributions, in grid units.
    pred_logits: (B, A, C) class logits.
    anchor_points: (A, 2) cell centres in grid units of their level.
    strides: (A, 1) the stride of each anchor's level in pixels.
    """

    pred_dist: torch.Tensor
    pred_logits: torch.Tensor
    anchor_points: torch.Tensor
    strides: torch.Tensor


# The anchors' cache key: feature-map sizes, device and dtype.
_AnchorKey = tuple[tuple[tuple[int, int], ...], torch.device, torch.dtype]


def _final_bias(branch: nn.Module) -> torch.Tensor:
    """The bias of the 1x1 convolution that ends a head branch (as built in DetectHead.__init__)."""
    conv = list(branch.children())[-1]
    if not isinstance(conv, nn.Conv2d) or conv.bias is None:
        raise TypeError(f"a head branch must end in a convolution with a bias, not {conv}")
    return conv.bias


class DetectHead(nn.Module):
    def __init__(
        self, *, num_classes: int, in_channels: tuple[int, ...], strides: tuple[int, ...], reg_max: int = 16
    ):
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = strides
        # sized by the stride-8 level's channels: a P2 level (fewer channels) leaves the others' as they were
        base = in_channels[strides.index(8)] if 8 in strides else in_channels[0]
        box_hidden = max(16, base // 4, reg_max * 4)
        cls_hidden = max(base, min(num_classes, 100))
        self.box_branches = nn.ModuleList(
            nn.Sequential(
                ConvBNAct(c, box_hidden, 3),
                ConvBNAct(box_hidden, box_hidden, 3),
                nn.Conv2d(box_hidden, 4 * reg_max, 1),
            )
            for c in in_channels
        )
        self.cls_branches = nn.ModuleList(
            nn.Sequential(
                ConvBNAct(c, cls_hidden, 3),
                ConvBNAct(cls_hidden, cls_hidden, 3),
                nn.Conv2d(cls_hidden, num_classes, 1),
            )
            for c in in_channels
        )
        self._anchor_cache: dict[_AnchorKey, tuple[torch.Tensor, torch.Tensor]] = {}

    def init_biases(self, image_size: int) -> None:
        """Start box logits flat and class logits at a low prior (about 5 objects per image)."""
        for box, cls, stride in zip(self.box_branches, self.cls_branches, self.strides, strict=True):
            nn.init.constant_(_final_bias(box), 1.0)
            cells = (image_size / stride) ** 2
            nn.init.constant_(_final_bias(cls), math.log(5 / self.num_classes / cells))

    def anchors(
        self, shapes: list[tuple[int, int]], device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(shapes), device, dtype)
        if key not in self._anchor_cache:
            points, strides = [], []
            for (h, w), stride in zip(shapes, self.strides, strict=True):
                ys = torch.arange(h, device=device, dtype=dtype) + 0.5
                xs = torch.arange(w, device=device, dtype=dtype) + 0.5
                grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
                points.append(torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2))
                strides.append(torch.full((h * w, 1), float(stride), device=device, dtype=dtype))
            self._anchor_cache = {key: (torch.cat(points), torch.cat(strides))}
        return self._anchor_cache[key]

    def forward(self, features: list[torch.Tensor]) -> HeadOutput:
        dists, logits, shapes = [], [], []
        for feat, box, cls in zip(features, self.box_branches, self.cls_branches, strict=True):
            shapes.append((feat.shape[2], feat.shape[3]))
            dists.append(box(feat).flatten(2))
            logits.append(cls(feat).flatten(2))
        pred_dist = torch.cat(dists, dim=2).permute(0, 2, 1).contiguous()
        pred_logits = torch.cat(logits, dim=2).permute(0, 2, 1).contiguous()
        points, strides = self.anchors(shapes, features[0].device, pred_dist.dtype)
        return HeadOutput(pred_dist, pred_logits, points, strides)


def decode_distances(pred_dist: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Expected distance per side from its distribution: (B, A, 4*R) -> (B, A, 4) in grid units."""
    b, a, _ = pred_dist.shape
    probs = pred_dist.view(b, a, 4, reg_max).softmax(dim=3)
    bins = torch.arange(reg_max, device=pred_dist.device, dtype=probs.dtype)
    return probs @ bins


def distances_to_boxes(distances: torch.Tensor, anchor_points: torch.Tensor) -> torch.Tensor:
    """(left, top, right, bottom) around each anchor -> xyxy, both in the same units."""
    left_top, right_bottom = distances.chunk(2, dim=-1)
    return torch.cat((anchor_points - left_top, anchor_points + right_bottom), dim=-1)
