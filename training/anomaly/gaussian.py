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
from training.anomaly.features import EarlyBackbone, tile_features
from training.anomaly.onnx import FeatureRunner, MahalanobisHead, ort_runner

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
        self.runner: FeatureRunner | None = None  # the stages under ONNX Runtime (use_onnxruntime)
        self.distance_runner: FeatureRunner | None = None  # stages and distances in one ONNX graph

    def use_onnxruntime(self, threads: int | None = None) -> bool:
        """Run the backbone stages under ONNX Runtime from now on (as the detector on CPU); False when
        onnxruntime is not installed (torch keeps running them)."""
        self.runner = ort_runner(self.extractor, self.input_size, threads)
        if self.runner is not None and self.mean is not None and self.precision is not None:
            head = MahalanobisHead(self.extractor, self.mean, self.precision)
            self.distance_runner = ort_runner(head, self.input_size, threads)
        return self.runner is not None

    def features(self, tiles: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, D, S/8, S/8) features of uint8 tiles resized to the model's input size."""
        return tile_features(self.extractor, tiles, self.input_size, self.batch_size, self.runner)

    def fit(self, clean_tiles: Sequence[np.ndarray], seed: int = 0) -> FeatureGaussian:
        return self.fit_features(self.features(clean_tiles), seed=seed)

    def fit_features(self, feats: torch.Tensor, seed: int = 0) -> FeatureGaussian:
        patches = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).numpy().astype(np.float64)
        if len(patches) > MAX_FIT_PATCHES:
            rng = np.random.default_rng(seed)
            patches = patches[rng.choice(len(patches), MAX_FIT_PATCHES, replace=False)]
        mean = patches.mean(axis=0)
        cov = np.cov(patches, rowvar=False) + COV_EPSILON * np.eye(patches.shape[1])
        self.mean = torch.from_numpy(mean.astype(np.float32))
        self.precision = torch.from_numpy(np.linalg.inv(cov).astype(np.float32))
        self.distance_runner = None  # a new memory: use_onnxruntime() again builds its graph
        return self

    @torch.inference_mode()
    def distance_maps(self, feats: torch.Tensor) -> np.ndarray:
        """(B, D, h, w) features -> (B, h, w) Mahalanobis distances."""
        if self.mean is None or self.precision is None:
            raise RuntimeError("FeatureGaussian: fit() or load before scoring")
        b, d, h, w = feats.shape
        centred = feats.permute(0, 2, 3, 1).reshape(-1, d) - self.mean  # (B*h*w, D)
        dist = ((centred @ self.precision) * centred).sum(1).clamp_min_(0).sqrt_().reshape(b, h, w)
        return dist.numpy()

    def maps(self, tiles: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.distance_runner is not None:  # one ONNX graph: stages and distances
            runner = self.distance_runner
            dist = tile_features(self.extractor, tiles, self.input_size, self.batch_size, runner).numpy()
        else:
            dist = self.distance_maps(self.features(tiles))
        return [finish_map(m, to_gray(t).shape[:2]) for m, t in zip(dist, tiles, strict=True)]
