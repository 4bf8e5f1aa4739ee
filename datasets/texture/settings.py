"""What the texture features compute: one strict, frozen settings object, stored in every classical bundle.

The feature vector's layout (which columns belong to which group) is a pure function of these settings, so
a bundle's weights can be checked against its manifest before anything is predicted.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from datasets.settings import StrictModel

FeatureGroup = Literal["histogram", "glcm", "lbp", "hog", "edges"]
GROUPS: tuple[FeatureGroup, ...] = ("histogram", "glcm", "lbp", "hog", "edges")
GLCM_PROPS: tuple[str, ...] = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")
# Bounds a bundle's manifest (untrusted) may not exceed: a distance or radius pads every crop to twice its
# size, and each distance adds a levels x levels x angles co-occurrence array.
MAX_GLCM_DISTANCE_PX = 64
MAX_GLCM_DISTANCES = 8
MAX_LBP_RADIUS_PX = 16.0
MAX_LBP_SCALES = 8
HISTOGRAM_MOMENTS = 4  # mean, std, skewness, excess kurtosis
EDGE_SCALARS = 4  # Otsu threshold, dark fraction, mean and std of the Sobel magnitude


class FeatureSettings(StrictModel):
    """Parameters of every feature group (defaults: the NEU baseline in ``models/neu-classic``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: tuple[FeatureGroup, ...] = GROUPS
    blur_sigma_px: float = Field(0.0, ge=0, le=10, description="Gaussian blur before every group (0: off)")
    histogram_bins: int = Field(32, ge=2, le=256)
    glcm_levels: int = Field(32, ge=2, le=256, description="grey levels the image is quantised to")
    glcm_distances_px: tuple[int, ...] = (1, 2, 4)
    glcm_angles: int = Field(4, ge=1, le=16, description="directions evenly spread over [0, pi)")
    lbp_points_radius: tuple[tuple[int, float], ...] = ((8, 1.0), (16, 2.0), (24, 3.0))
    hog_orientations: int = Field(9, ge=2, le=36)
    hog_cell_px: int = Field(16, ge=2, le=128)
    hog_block_cells: int = Field(2, ge=1, le=8)
    edge_bins: int = Field(16, ge=2, le=256)

    @field_validator("groups")
    @classmethod
    def _known_unique(cls, groups: tuple[str, ...]) -> tuple[str, ...]:
        if not groups or len(set(groups)) != len(groups):
            raise ValueError(f"groups must be a non-empty list without repeats, got {list(groups)}")
        return tuple(g for g in GROUPS if g in groups)  # canonical order, so layouts never depend on order

    @field_validator("glcm_distances_px")
    @classmethod
    def _distances(cls, distances: tuple[int, ...]) -> tuple[int, ...]:
        if not 1 <= len(distances) <= MAX_GLCM_DISTANCES:
            raise ValueError(f"needs 1 to {MAX_GLCM_DISTANCES} distances, got {len(distances)}")
        if min(distances) < 1 or max(distances) > MAX_GLCM_DISTANCE_PX:
            raise ValueError(
                f"distances must be 1..{MAX_GLCM_DISTANCE_PX} pixels, got {list(distances)[:10]}"
            )
        return distances

    @field_validator("lbp_points_radius")
    @classmethod
    def _lbp(cls, pairs: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
        if not 1 <= len(pairs) <= MAX_LBP_SCALES:
            raise ValueError(f"needs 1 to {MAX_LBP_SCALES} (points, radius) pairs, got {len(pairs)}")
        if any(p < 4 or p > 32 or not 0 < r <= MAX_LBP_RADIUS_PX for p, r in pairs):
            raise ValueError(
                f"each LBP (points, radius) needs 4 <= points <= 32 and 0 < radius <= {MAX_LBP_RADIUS_PX}, "
                f"got {pairs}"
            )
        return pairs

    def group_length(self, group: FeatureGroup) -> int:
        """Number of columns ``group`` contributes to the feature vector."""
        if group == "histogram":
            return self.histogram_bins + HISTOGRAM_MOMENTS
        if group == "glcm":
            return 2 * len(GLCM_PROPS) * len(self.glcm_distances_px)  # mean and range over angles
        if group == "lbp":
            return sum(points + 2 for points, _ in self.lbp_points_radius)  # 'uniform' codes
        if group == "hog":
            return 2 * self.hog_orientations  # mean and std over block positions
        return self.edge_bins + EDGE_SCALARS

    def layout(self) -> dict[FeatureGroup, tuple[int, int]]:
        """``group -> (start, stop)`` columns of the concatenated vector, in :data:`GROUPS` order."""
        out: dict[FeatureGroup, tuple[int, int]] = {}
        start = 0
        for group in self.groups:
            stop = start + self.group_length(group)
            out[group] = (start, stop)
            start = stop
        return out

    @property
    def length(self) -> int:
        return sum(self.group_length(g) for g in self.groups)

    @property
    def min_side_px(self) -> int:
        """Smallest crop side every group can work on; smaller crops are reflect-padded up to it."""
        lbp_reach = max(math.ceil(r) for _, r in self.lbp_points_radius)  # as lbp_histogram trims
        return max(
            self.hog_cell_px * self.hog_block_cells, 2 * max(self.glcm_distances_px) + 1, 2 * lbp_reach + 1
        )
