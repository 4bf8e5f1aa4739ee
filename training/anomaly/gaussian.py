"""PaDiM-style memory of clean steel: one Gaussian over our backbone's patch features.

PaDiM fits a Gaussian per image position because its objects are aligned; steel texture is not, so every
position shares one mean and covariance (fitted on every patch of every clean tile). A patch's anomaly is
its Mahalanobis distance to that Gaussian. As in PaDiM, ``0.01 * I`` is added to the covariance so its
inverse is stable (Ledoit-Wolf shrinkage gave the same figures at several times the fitting time).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from training.anomaly.base import finish_map, to_gray
from training.anomaly.features import EarlyBackbone
from training.inference import to_model_input

MAX_FIT_PATCHES = 200_000
COV_EPSILON = 0.01


class FeatureGaussian:
    """Backbone features + (mean, precision); :meth:`maps` gives Mahalanobis-distance maps."""

    kind = "backbone-gaussian"

    def __init__(
        self,
        extractor: EarlyBackbone,
        *,
        input_size: int,
        mean: torch.Tensor | None = None,
        precision: torch.Tensor | None = None,
        batch_size: int = 32,
    ):
        self.extractor = extractor.eval()
        self.input_size = input_size
        self.mean = mean
        self.precision = precision
        self.batch_size = batch_size

    @torch.inference_mode()
    def features(self, tiles: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, D, S/8, S/8) features of uint8 tiles resized to the detector's input size."""
        out = []
        for start in range(0, len(tiles), self.batch_size):
            chunk = tiles[start : start + self.batch_size]
            batch = np.stack([to_model_input(to_gray(t), size=self.input_size, channels=1) for t in chunk])
            out.append(self.extractor(torch.from_numpy(batch).float().div_(255.0)))
        return torch.cat(out)

    def fit(self, clean_tiles: Sequence[np.ndarray], seed: int = 0) -> FeatureGaussian:
        feats = self.features(clean_tiles)
        patches = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).numpy().astype(np.float64)
        if len(patches) > MAX_FIT_PATCHES:
            rng = np.random.default_rng(seed)
            patches = patches[rng.choice(len(patches), MAX_FIT_PATCHES, replace=False)]
        mean = patches.mean(axis=0)
        cov = np.cov(patches, rowvar=False) + COV_EPSILON * np.eye(patches.shape[1])
        self.mean = torch.from_numpy(mean.astype(np.float32))
        self.precision = torch.from_numpy(np.linalg.inv(cov).astype(np.float32))
        return self

    @torch.inference_mode()
    def maps(self, tiles: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.mean is None or self.precision is None:
            raise RuntimeError("FeatureGaussian: fit() or load before scoring")
        feats = self.features(tiles)
        b, d, h, w = feats.shape
        centred = feats.permute(0, 2, 3, 1).reshape(-1, d) - self.mean  # (B*h*w, D)
        dist = ((centred @ self.precision) * centred).sum(1).clamp_min_(0).sqrt_().reshape(b, h, w)
        return [finish_map(d.numpy(), to_gray(t).shape[:2]) for d, t in zip(dist, tiles, strict=True)]
