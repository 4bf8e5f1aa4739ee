"""The seed's approach: a small convolutional autoencoder trained from scratch on clean crops.

It learns to rebuild clean steel at its native pixel pitch; what it cannot rebuild (a defect) leaves a
large per-pixel error. Fully convolutional, so it scores any tile size that is a multiple of 8.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.anomaly.base import finish_map, to_gray


def _block(c_in: int, c_out: int, *, down: bool) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 4, 2, 1) if down else nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1, inplace=True))


class ConvAutoencoder(nn.Module):
    """(B, 1, H, W) in [0, 1] -> reconstruction of the same shape; bottleneck (B, 32, H/8, W/8)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width  # the manifest's architecture
        self.encoder = nn.Sequential(
            _block(1, width, down=True),
            _block(width, width * 2, down=True),
            _block(width * 2, width * 4, down=True),
            nn.Conv2d(width * 4, 32, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(32, width * 4, 1),
            _block(width * 4, width * 2, down=False),
            _block(width * 2, width, down=False),
            nn.ConvTranspose2d(width, 1, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.encoder(x))  # Module.__call__ is typed Any
        return out


class AutoencoderScorer:
    kind = "conv-autoencoder"

    def __init__(self, model: ConvAutoencoder, *, batch_size: int = 32):
        self.model = model.eval()
        self.batch_size = batch_size

    def fit(
        self, clean_crops: Sequence[np.ndarray], *, steps: int = 800, crop_px: int = 64, seed: int = 0
    ) -> AutoencoderScorer:
        """Train on random ``crop_px`` windows (with flips) of clean crops; MSE loss, Adam."""
        rng = random.Random(seed)
        torch.manual_seed(seed)
        crops = [to_gray(c) for c in clean_crops if min(to_gray(c).shape) >= crop_px]
        opt = torch.optim.Adam(self.model.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        self.model.train()
        for _ in range(steps):
            batch = np.stack(
                [_random_window(rng.choice(crops), crop_px, rng) for _ in range(self.batch_size)]
            )
            x = torch.from_numpy(batch[:, None]).float().div_(255.0)
            loss = F.mse_loss(self.model(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        self.model.eval()
        return self

    @torch.inference_mode()
    def maps(self, tiles: Sequence[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for tile in tiles:
            gray = to_gray(tile)
            h, w = gray.shape
            ph, pw = (-h) % 8, (-w) % 8
            padded = cv2.copyMakeBorder(gray, 0, ph, 0, pw, cv2.BORDER_REFLECT) if ph or pw else gray
            x = torch.from_numpy(padded[None, None]).float().div_(255.0)
            err = (self.model(x) - x).pow(2)[0, 0, :h, :w].numpy()
            out.append(finish_map(err, (h, w)))
        return out


def _random_window(crop: np.ndarray, side: int, rng: random.Random) -> np.ndarray:
    y = rng.randrange(crop.shape[0] - side + 1)
    x = rng.randrange(crop.shape[1] - side + 1)
    win = crop[y : y + side, x : x + side]
    if rng.random() < 0.5:
        win = win[:, ::-1]
    if rng.random() < 0.5:
        win = win[::-1]
    return np.ascontiguousarray(win)
