"""PatchCore-style memory of clean steel: a coreset of our backbone's patch features, scored by the
distance of each patch to its nearest neighbour in the memory.

Clean NEU steel is several textures (the clean tiles come from four source classes), so one Gaussian
(``gaussian.py``) blurs them together; a memory of real clean patches keeps each. The memory is a
greedy k-centre coreset (PatchCore's "coreset subsampling", on a random projection for speed): written
here because scikit-learn has no k-centre selection; the search itself is scikit-learn's
``NearestNeighbors`` (brute force: exact, and fastest at these sizes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from training.anomaly.base import finish_map, to_gray
from training.anomaly.features import EarlyBackbone, tile_features
from training.anomaly.onnx import FeatureRunner, ort_runner

PROJECTION_DIMS = 32  # the coreset's distances on a random projection (PatchCore: same picks, far faster)
MAX_CANDIDATE_PATCHES = 60_000  # patches the coreset is chosen from (a random sample of all clean patches)


def kcenter_coreset(patches: np.ndarray, size: int, *, seed: int = 0) -> np.ndarray:
    """Indices of ``size`` rows of ``patches`` (N, D) chosen greedily, each the farthest from those so far."""
    if size >= len(patches):
        return np.arange(len(patches))
    rng = np.random.default_rng(seed)
    dims = min(PROJECTION_DIMS, patches.shape[1])
    projected = patches @ rng.normal(size=(patches.shape[1], dims)).astype(np.float32) / np.sqrt(dims)
    chosen = [int(rng.integers(len(patches)))]
    nearest = np.linalg.norm(projected - projected[chosen[0]], axis=1)
    for _ in range(size - 1):
        pick = int(nearest.argmax())
        chosen.append(pick)
        np.minimum(nearest, np.linalg.norm(projected - projected[pick], axis=1), out=nearest)
    return np.asarray(chosen)


class FeatureKNN:
    """Backbone features + a memory of clean patches; :meth:`maps` gives nearest-neighbour distance maps."""

    kind = "backbone-knn"

    def __init__(
        self,
        extractor: EarlyBackbone,
        *,
        input_size: int,
        memory: torch.Tensor | None = None,
        batch_size: int = 32,
    ):
        self.extractor = extractor.eval()
        self.input_size = input_size
        self.batch_size = batch_size
        self.runner: FeatureRunner | None = None  # the stages under ONNX Runtime (use_onnxruntime)
        self.memory = memory
        self._index: NearestNeighbors | None = None

    def use_onnxruntime(self, threads: int | None = None) -> bool:
        """Run the backbone stages under ONNX Runtime from now on (as the detector on CPU); False when
        onnxruntime is not installed (torch keeps running them)."""
        self.runner = ort_runner(self.extractor, self.input_size, threads)
        return self.runner is not None

    def features(self, tiles: Sequence[np.ndarray]) -> torch.Tensor:
        return tile_features(self.extractor, tiles, self.input_size, self.batch_size, self.runner)

    def fit(self, clean_tiles: Sequence[np.ndarray], *, memory_size: int = 8000, seed: int = 0) -> FeatureKNN:
        return self.fit_features(self.features(clean_tiles), memory_size=memory_size, seed=seed)

    def fit_features(self, feats: torch.Tensor, *, memory_size: int = 8000, seed: int = 0) -> FeatureKNN:
        """Keep a coreset of the patches of clean features (B, D, h, w) as the memory."""
        patches = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).numpy().astype(np.float32)
        if len(patches) > MAX_CANDIDATE_PATCHES:
            rng = np.random.default_rng(seed)
            patches = patches[rng.choice(len(patches), MAX_CANDIDATE_PATCHES, replace=False)]
        self.memory = torch.from_numpy(np.ascontiguousarray(patches[kcenter_coreset(patches, memory_size)]))
        self._index = None
        return self

    def distance_maps(self, feats: torch.Tensor) -> np.ndarray:
        """(B, D, h, w) features -> (B, h, w) distance of each patch to its nearest memory patch."""
        if self.memory is None:
            raise RuntimeError("FeatureKNN: fit() or load before scoring")
        if self._index is None:
            self._index = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(self.memory.numpy())
        b, d, h, w = feats.shape
        queries = feats.permute(0, 2, 3, 1).reshape(-1, d).numpy()
        dist, _ = self._index.kneighbors(queries)
        out: np.ndarray = np.asarray(dist[:, 0], dtype=np.float32).reshape(b, h, w)
        return out

    def maps(self, tiles: Sequence[np.ndarray]) -> list[np.ndarray]:
        dist = self.distance_maps(self.features(tiles))
        return [finish_map(m, to_gray(t).shape[:2]) for m, t in zip(dist, tiles, strict=True)]
