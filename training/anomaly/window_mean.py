"""A second memory of clean steel over the same backbone features: the mean feature of large windows.

The patch Gaussian (:mod:`training.anomaly.gaussian`) sees 3 x 3-pooled patches, a few pixels of steel
each, and is weakest where a defect changes the texture over a whole area rather than at a spot
(pitted_surface: tile AUROC 0.73 against 0.90-1.00 for the other classes). Averaged over a window of
5/8 of the feature grid a side (14 of 22 cells at 176 px input, about 128 px of a 200 px tile; 2 x 2
windows, the second flush with the edge), the same features describe the area's texture: a window's score
is the squared Mahalanobis distance of its standardised mean vector from the clean training windows'
(Ledoit-Wolf, scikit-learn).
This is the GLCM memory's role (:mod:`training.anomaly.texture`) at almost no cost, since the features are
already computed: both distances come out of one ONNX Runtime graph (:class:`WindowMeanHead`).

:class:`WindowFusedScorer` puts both on one scale as the GLCM fusion does (z-scores against their own
clean training tile scores) and adds the window's positive z-score to the patch map's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.anomaly.base import finish_map, tile_score, to_gray
from training.anomaly.features import model_inputs
from training.anomaly.gaussian import FeatureGaussian
from training.anomaly.onnx import MahalanobisHead, ort_outputs_runner
from training.anomaly.texture import (
    ScoreScale,
    check_gaussian_shapes,
    fit_standardised_gaussian,
    window_starts,
)


def grid_side(input_size: int) -> int:
    """The features' side at ``input_size`` px: stride 8, rounded up as the strided convolutions do."""
    return -(-input_size // 8)


@dataclass
class WindowMeanMemory:
    """Standardisation and inverse covariance of clean windows' mean feature vectors."""

    cells: int = 15  # window side in feature cells (stride 8 at the anomaly model's input size)
    step: int = 9
    centre: np.ndarray | None = None
    scale: np.ndarray | None = None
    location: np.ndarray | None = None
    precision: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.cells < 1 or not 0 < self.step <= self.cells:
            raise ValueError(f"window: cells {self.cells} and step {self.step} need 0 < step <= cells")

    @classmethod
    def for_grid(cls, grid: int) -> WindowMeanMemory:
        """Two windows each way, 5/8 of the side (128 px of a 200 px tile), the second flush with the
        far edge: the GLCM memory's layout, whatever the input size."""
        cells = max(1, round(grid * 5 / 8))
        return cls(cells=cells, step=max(1, grid - cells))

    def origins(self, grid: int) -> list[tuple[int, int]]:
        starts = window_starts(grid, self.cells, self.step)
        return [(y, x) for y in starts for x in starts]

    def vectors(self, features: np.ndarray) -> np.ndarray:
        """(B, D, g, g) features -> (B, windows, D) window means."""
        c = self.cells
        means = [
            features[:, :, y : y + c, x : x + c].mean(axis=(2, 3))
            for y, x in self.origins(features.shape[-1])
        ]
        return np.stack(means, axis=1)

    def fit(self, features: np.ndarray) -> WindowMeanMemory:
        vectors = self.vectors(features).reshape(-1, features.shape[1]).astype(np.float64)
        self.centre, self.scale, self.location, self.precision = fit_standardised_gaussian(vectors)
        return self

    def fitted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.centre is None or self.scale is None or self.location is None or self.precision is None:
            raise RuntimeError("WindowMeanMemory: fit() or load before scoring")
        return self.centre, self.scale, self.location, self.precision

    def check_shapes(self, dims: int) -> WindowMeanMemory:
        """Raise ValueError when loaded arrays do not fit ``dims`` features."""
        check_gaussian_shapes("window", (self.centre, self.scale, self.location, self.precision), dims)
        return self

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(B, D, g, g) features -> (B, windows) squared distances (as the GLCM memory: heavier tail)."""
        centre, scale, location, precision = self.fitted()
        z = (self.vectors(features).astype(np.float64) - centre) / scale - location
        distances: np.ndarray = np.einsum("bwi,ij,bwj->bw", z, precision, z)
        return distances

    def grid_maps(self, distances: np.ndarray, grid: int) -> np.ndarray:
        """(B, windows) distances -> (B, g, g): each feature cell the highest distance of the windows
        covering it."""
        out = np.zeros((len(distances), grid, grid), np.float32)
        c = self.cells
        for i, (y, x) in enumerate(self.origins(grid)):
            view = out[:, y : y + c, x : x + c]
            np.maximum(view, distances[:, i, None, None].astype(np.float32), out=view)
        return out


class WindowMeanHead(nn.Module):
    """The backbone stages once, then both distances: (B, 1, S, S) -> patch (B, g, g), windows (B, n)."""

    offset: torch.Tensor  # buffers, named for the type checker (register_buffer sets them)
    inv_scale: torch.Tensor
    lower: torch.Tensor

    def __init__(self, patch: MahalanobisHead, memory: WindowMeanMemory, grid: int):
        super().__init__()
        centre, scale, location, precision = memory.fitted()
        self.patch = patch
        self.cells = memory.cells
        self.origins = memory.origins(grid)
        # (v - centre) / scale - location == (v - offset) / scale; z^T P z == |z L|^2 with P = L L^T
        self.register_buffer("offset", torch.from_numpy((centre + scale * location).astype(np.float32)))
        self.register_buffer("inv_scale", torch.from_numpy((1.0 / scale).astype(np.float32)))
        self.register_buffer("lower", torch.from_numpy(np.linalg.cholesky(precision).astype(np.float32)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.patch.extractor(images)
        c = self.cells
        means = torch.stack([features[:, :, y : y + c, x : x + c].mean((2, 3)) for y, x in self.origins], 1)
        windows = ((means - self.offset) * self.inv_scale @ self.lower).pow(2).sum(-1)
        return self.patch.distances(features), windows


class WindowFusedScorer:
    """The patch Gaussian and a :class:`WindowMeanMemory` over the same features, fused per pixel."""

    kind = "backbone-gaussian+window"

    def __init__(
        self,
        gaussian: FeatureGaussian,
        window: WindowMeanMemory,
        *,
        backbone_scale: ScoreScale | None = None,
        window_scale: ScoreScale | None = None,
    ) -> None:
        self.gaussian = gaussian
        self.window = window
        self.backbone_scale = backbone_scale
        self.window_scale = window_scale
        self.runner: Callable[[np.ndarray], list[np.ndarray]] | None = None  # both distances, one graph

    @property
    def input_size(self) -> int:
        return self.gaussian.input_size

    def use_onnxruntime(self, threads: int | None = None) -> bool:
        """Both distances from one ONNX Runtime graph from now on (before fitting: the features)."""
        g = self.gaussian
        if g.mean is None or g.precision is None or self.window.precision is None:
            return g.use_onnxruntime(threads)
        head = WindowMeanHead(MahalanobisHead(g.extractor, g.mean, g.precision), self.window, self.grid)
        self.runner = ort_outputs_runner(head, self.input_size, threads, outputs=2)
        return self.runner is not None

    @property
    def grid(self) -> int:
        return grid_side(self.input_size)

    def fit(self, clean_tiles: Sequence[np.ndarray]) -> WindowFusedScorer:
        """Both memories from one feature pass, then each one's scale on the same tiles' scores."""
        features = self.gaussian.features(clean_tiles)
        self.gaussian.fit_features(features)
        self.window.fit(features.numpy())
        self.runner = None  # a new memory: use_onnxruntime() again builds its graph
        patch, windows = self.distances(clean_tiles)
        shapes = [to_gray(t).shape[:2] for t in clean_tiles]
        self.backbone_scale = ScoreScale.of(
            [tile_score(finish_map(m, hw)) for m, hw in zip(patch, shapes, strict=True)]
        )
        self.window_scale = ScoreScale.of(windows.max(axis=1).tolist())
        return self

    @torch.inference_mode()
    def distances(self, tiles: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Patch distances (B, g, g), as :class:`FeatureGaussian` has them, and window distances (B, n)."""
        patch: list[np.ndarray] = []
        windows: list[np.ndarray] = []
        size = self.gaussian.batch_size
        for start in range(0, len(tiles), size):
            chunk = tiles[start : start + size]
            if self.runner is not None:
                patch_d, window_d = self.runner(model_inputs(chunk, self.input_size))
            else:
                features = self.gaussian.features(chunk)
                patch_d = self.gaussian.distance_maps(features)
                window_d = self.window.distances(features.numpy())
            patch.append(patch_d)
            windows.append(window_d)
        return np.concatenate(patch), np.concatenate(windows)

    def maps(self, tiles: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The patch map lifted, cell by cell, by the backbone's spread times the covering window's
        z-score where it is positive: the two z-scores summed, in the patch map's units. A sum, not the
        per-pixel maximum the GLCM fusion takes, so the map keeps the patch map's shape inside an
        anomalous window and regions stay local (with the maximum every region was a whole window, which any
        detection inside it explained; tile AUROC 0.957 against 0.960 at 176 px). Done on the feature grid,
        then upsampled and blurred once."""
        if self.backbone_scale is None or self.window_scale is None:
            raise RuntimeError("WindowFusedScorer: fit() or load before scoring")
        patch, windows = self.distances(tiles)
        w = self.window_scale
        z = self.window.grid_maps((windows - w.mean) / w.std, patch.shape[-1])
        fused = patch + np.float32(self.backbone_scale.std) * np.maximum(z, 0.0)
        return [finish_map(m, to_gray(t).shape[:2]) for m, t in zip(fused, tiles, strict=True)]
