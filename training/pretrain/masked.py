"""Masked-image modelling for the detector's own backbone and neck.

Square patches of the input are hidden (replaced by the image's mean grey) and a light decoder rebuilds
the pixels from the neck's stride-8 output; the loss is the L1 error on the hidden pixels only, so the
network must infer texture from its surroundings rather than copy it. Small in-domain data is where such
objectives hold up (the issue's reason for trying them); the decoder is thrown away, the backbone and neck
are saved under the detector's own tensor names (``backbone.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.yolo.backbone import BackboneNeck
from training.models.yolo.blocks import ConvBNAct
from training.models.yolo.model import SCALES


def mask_patches(
    images: torch.Tensor, *, patch: int, ratio: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masked images, mask)``: each ``patch`` x ``patch`` square hidden with probability ``ratio``
    (by ``generator``), hidden pixels set to their image's mean; mask (B, 1, H, W) is 1 where hidden."""
    b, _, h, w = images.shape
    cells = torch.rand((b, 1, -(-h // patch), -(-w // patch)), generator=generator) < ratio
    mask = F.interpolate(cells.float(), scale_factor=patch, mode="nearest")[:, :, :h, :w].to(images)
    fill = images.mean(dim=(1, 2, 3), keepdim=True)
    return images * (1 - mask) + fill * mask, mask


class MaskedImageModel(nn.Module):
    """The YOLO backbone and neck of ``size`` and a decoder from the stride-8 output back to pixels."""

    def __init__(self, *, size: str, in_channels: int):
        super().__init__()
        depth, width, max_channels = SCALES[size]
        self.backbone = BackboneNeck(
            in_channels=in_channels, width_mult=width, depth_mult=depth, max_channels=max_channels
        )
        c3 = self.backbone.out_channels[0]
        layers: list[nn.Module] = []
        for c_in, c_out in ((c3, 64), (64, 32), (32, 16)):  # stride 8 -> 4 -> 2 -> 1
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), ConvBNAct(c_in, c_out, 3)]
        layers.append(nn.Conv2d(16, in_channels, 1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> the reconstruction, same shape."""
        out: torch.Tensor = torch.sigmoid(self.decoder(self.backbone(images)[0]))
        return out

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The backbone and neck tensors, named as in the detector (``backbone.<name>``)."""
        return {
            f"backbone.{k}": v.detach().cpu().contiguous().clone()
            for k, v in self.backbone.state_dict().items()
        }


def masked_l1(reconstruction: torch.Tensor, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the hidden pixels."""
    hidden = mask.expand_as(images)
    return ((reconstruction - images).abs() * hidden).sum() / hidden.sum().clamp_min(1.0)
