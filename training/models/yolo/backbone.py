"""CSP/C2f backbone with SPPF and a PAN neck: image in, feature maps at strides 8/16/32 out (and 4 with
the P2 level: the top-down path goes one stage further, to stage 2's fine texture, and the bottom-up path
starts there)."""

from __future__ import annotations

import math

import torch
from torch import nn

from training.models.yolo.blocks import SPPF, C2f, ConvBNAct

BASE_WIDTHS = (64, 128, 256, 512, 1024)
BASE_DEPTHS = (3, 6, 6, 3)


def scaled_width(base: int, width_mult: float, max_channels: int) -> int:
    """Channels after the width multiplier, capped and rounded up to a multiple of 8."""
    return int(math.ceil(min(base, max_channels) * width_mult / 8) * 8)


def scaled_depth(base: int, depth_mult: float) -> int:
    return max(round(base * depth_mult), 1)


class BackboneNeck(nn.Module):
    """Returns ``[P3, P4, P5]``: ``(B, c3, H/8, W/8)``, ``(B, c4, H/16, W/16)``, ``(B, c5, H/32, W/32)``;
    with ``p2``, ``[P2, P3, P4, P5]``, P2 ``(B, c2, H/4, W/4)``."""

    def __init__(
        self, *, in_channels: int, width_mult: float, depth_mult: float, max_channels: int, p2: bool = False
    ):
        super().__init__()
        c1, c2, c3, c4, c5 = (scaled_width(b, width_mult, max_channels) for b in BASE_WIDTHS)
        n1, n2, n3, n4 = (scaled_depth(d, depth_mult) for d in BASE_DEPTHS)
        self.out_channels: tuple[int, ...] = (c2, c3, c4, c5) if p2 else (c3, c4, c5)
        self.p2 = p2

        self.stem = ConvBNAct(in_channels, c1, 3, 2)
        self.stage2 = nn.Sequential(ConvBNAct(c1, c2, 3, 2), C2f(c2, c2, n1, shortcut=True))
        self.stage3 = nn.Sequential(ConvBNAct(c2, c3, 3, 2), C2f(c3, c3, n2, shortcut=True))
        self.stage4 = nn.Sequential(ConvBNAct(c3, c4, 3, 2), C2f(c4, c4, n3, shortcut=True))
        self.stage5 = nn.Sequential(ConvBNAct(c4, c5, 3, 2), C2f(c5, c5, n4, shortcut=True), SPPF(c5, c5))

        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top_down4 = C2f(c5 + c4, c4, n4)
        self.top_down3 = C2f(c4 + c3, c3, n4)
        self.down3 = ConvBNAct(c3, c3, 3, 2)
        self.bottom_up4 = C2f(c3 + c4, c4, n4)
        self.down4 = ConvBNAct(c4, c4, 3, 2)
        self.bottom_up5 = C2f(c4 + c5, c5, n4)
        if p2:
            self.top_down2 = C2f(c3 + c2, c2, n4)
            self.down2 = ConvBNAct(c2, c2, 3, 2)
            self.bottom_up3 = C2f(c2 + c3, c3, n4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p2 = self.stage2(self.stem(x))
        p3 = self.stage3(p2)
        p4 = self.stage4(p3)
        p5 = self.stage5(p4)
        n4 = self.top_down4(torch.cat((self.up(p5), p4), dim=1))
        out3 = self.top_down3(torch.cat((self.up(n4), p3), dim=1))
        levels = []
        if self.p2:
            out2 = self.top_down2(torch.cat((self.up(out3), p2), dim=1))
            out3 = self.bottom_up3(torch.cat((self.down2(out2), out3), dim=1))
            levels.append(out2)
        out4 = self.bottom_up4(torch.cat((self.down3(out3), n4), dim=1))
        out5 = self.bottom_up5(torch.cat((self.down4(out4), p5), dim=1))
        return [*levels, out3, out4, out5]
