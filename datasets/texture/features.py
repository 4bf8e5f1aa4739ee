"""Texture feature extractors: each maps a uint8 grayscale ``(H, W)`` image to a fixed-length float vector.

Every group is translation-invariant and independent of the image size (histograms and statistics pooled
over the whole image), so a 64 px tile, a 200 px NEU image and an odd-sized defect crop all give vectors of
the layout :meth:`FeatureSettings.layout` describes. GLCM, LBP and HOG come from scikit-image; the
histograms, Sobel and Otsu from OpenCV/NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from skimage.feature import graycomatrix, hog, local_binary_pattern

from datasets.texture.preprocess import (
    gaussian_blur,
    otsu_threshold,
    pad_to_min_size,
    sobel_magnitude,
    to_gray,
)
from datasets.texture.settings import GLCM_PROPS, FeatureGroup, FeatureSettings

EDGE_RANGE = 256.0  # Sobel magnitudes above this (strong edges) share the last histogram bin


def grey_histogram(gray: np.ndarray, bins: int) -> np.ndarray:
    """``bins`` normalised counts over 0..255, then mean/255, std/255, skewness, excess kurtosis."""
    counts = np.bincount(((gray.astype(np.int32) * bins) // 256).ravel(), minlength=bins)[:bins]
    density = counts / max(1, gray.size)
    values = gray.astype(np.float64) / 255.0
    mean, std = values.mean(), values.std()
    if std > 1e-9:  # float rounding leaves ~1e-16 on a flat image
        z = (values - mean) / std
        skew, kurt = float((z**3).mean()), float((z**4).mean() - 3.0)
    else:  # a flat image has no shape to describe
        skew = kurt = 0.0
    return np.concatenate([density, [mean, std, skew, kurt]])


def quantise(gray: np.ndarray, levels: int) -> np.ndarray:
    """Grey levels 0..255 mapped onto 0..levels-1 in equal steps (``v * levels // 256``)."""
    return ((gray.astype(np.int32) * levels) // 256).astype(np.uint8)


def haralick_properties(matrices: np.ndarray) -> dict[str, np.ndarray]:
    """:data:`GLCM_PROPS` of every co-occurrence matrix in ``(levels, levels, ...)``: arrays of shape ``...``.

    The same definitions as scikit-image's ``graycoprops`` (tested against it to 1e-9), computed for all
    matrices in one pass: ``graycoprops`` rebuilds its weight grids on every call (58 % of a 128 px
    window's GLCM vector; nine windows took 5.4 ms, 3.0 ms now), and the daemon's texture anomaly memory
    (``training.anomaly.texture``) scores several windows per tile.
    """
    levels = matrices.shape[0]
    flat = matrices.reshape(levels * levels, -1).astype(np.float64)
    sums = flat.sum(axis=0)
    flat = flat / np.where(sums == 0, 1.0, sums)
    grey = np.arange(levels, dtype=np.float64)
    diff = (grey[:, None] - grey[None, :]).ravel()
    marginal_i = flat.reshape(levels, levels, -1).sum(axis=1)  # (levels, n)
    marginal_j = flat.reshape(levels, levels, -1).sum(axis=0)
    mean_i, mean_j = grey @ marginal_i, grey @ marginal_j
    std_i = np.sqrt(np.maximum(((grey[:, None] - mean_i) ** 2 * marginal_i).sum(axis=0), 0.0))
    std_j = np.sqrt(np.maximum(((grey[:, None] - mean_j) ** 2 * marginal_j).sum(axis=0), 0.0))
    cov = np.outer(grey, grey).ravel() @ flat - mean_i * mean_j
    flat_variance = (std_i < 1e-15) | (std_j < 1e-15)  # as graycoprops: a constant matrix correlates as 1
    correlation = np.where(flat_variance, 1.0, cov / np.where(flat_variance, 1.0, std_i * std_j))
    values = {
        "contrast": diff**2 @ flat,
        "dissimilarity": np.abs(diff) @ flat,
        "homogeneity": (1.0 / (1.0 + diff**2)) @ flat,
        "energy": np.sqrt((flat**2).sum(axis=0)),
        "correlation": correlation,
    }
    return {prop: values[prop].reshape(matrices.shape[2:]) for prop in GLCM_PROPS}


def glcm_statistics(
    gray: np.ndarray, *, levels: int, distances_px: tuple[int, ...], angles: int
) -> np.ndarray:
    """Haralick statistics of the symmetric, normalised co-occurrence matrix.

    For each distance and each property in :data:`GLCM_PROPS` (distance-major order): the mean over the
    ``angles`` directions, then the range (max - min) over them, so rotation changes little.
    """
    many = glcm_statistics_many([gray], levels=levels, distances_px=distances_px, angles=angles)
    one: npt.NDArray[np.float64] = many[0]
    return one


def glcm_statistics_many(
    grays: Sequence[np.ndarray], *, levels: int, distances_px: tuple[int, ...], angles: int
) -> np.ndarray:
    """:func:`glcm_statistics` of each image, ``(len(grays), length)``, the properties in one pass."""
    thetas = [np.pi * k / angles for k in range(angles)]
    matrices = np.stack(
        [
            graycomatrix(
                quantise(gray, levels),
                distances=list(distances_px),
                angles=thetas,
                levels=levels,
                symmetric=True,
                normed=True,
            )
            for gray in grays
        ],
        axis=2,
    )  # (levels, levels, images, distances, angles)
    props = haralick_properties(matrices)
    out = [np.stack([v.mean(axis=2), v.max(axis=2) - v.min(axis=2)], axis=2) for v in props.values()]
    stacked: npt.NDArray[np.float64] = np.stack(out, axis=2)  # (images, distances, props, 2)
    return np.nan_to_num(stacked.reshape(len(grays), -1), nan=0.0)


def lbp_codes(gray: np.ndarray, points: int, radius: float) -> np.ndarray:
    """Rotation-invariant uniform LBP code per pixel: the number of neighbours >= the centre when they
    form at most one run around the circle, else ``points + 1``."""
    codes: np.ndarray = local_binary_pattern(gray, points, radius, method="uniform")
    return codes.astype(np.int64)


def lbp_histogram(gray: np.ndarray, points_radius: tuple[tuple[int, float], ...]) -> np.ndarray:
    """Normalised histograms of :func:`lbp_codes` (``points + 2`` bins per scale), over the pixels whose
    whole circle lies inside the image (scikit-image reads outside pixels as 0, a false edge)."""
    out = []
    for points, radius in points_radius:
        reach = int(np.ceil(radius))
        codes = lbp_codes(gray, points, radius)[reach:-reach, reach:-reach]
        out.append(np.bincount(codes.ravel(), minlength=points + 2)[: points + 2] / codes.size)
    return np.concatenate(out)


def pooled_hog(gray: np.ndarray, *, orientations: int, cell_px: int, block_cells: int) -> np.ndarray:
    """HOG block descriptors pooled over positions: mean then std of each orientation bin.

    Plain HOG is a spatial layout (its length grows with the image); surface texture has no fixed layout,
    so the block-normalised cell histograms are pooled, which also makes every image size comparable.
    """
    blocks = hog(
        gray,
        orientations=orientations,
        pixels_per_cell=(cell_px, cell_px),
        cells_per_block=(block_cells, block_cells),
        block_norm="L2-Hys",
        feature_vector=False,
    )
    cells = np.asarray(blocks).reshape(-1, orientations)
    return np.concatenate([cells.mean(axis=0), cells.std(axis=0)])


def edge_statistics(gray: np.ndarray, bins: int) -> np.ndarray:
    """Normalised histogram of the Sobel magnitude over 0..256, then Otsu threshold/255, the fraction of
    pixels at or below it, and the magnitude's mean and std (/256)."""
    magnitude = sobel_magnitude(gray)
    index = np.minimum((magnitude * (bins / EDGE_RANGE)).astype(np.int64), bins - 1)
    density = np.bincount(index.ravel(), minlength=bins) / magnitude.size
    threshold = otsu_threshold(gray)
    dark = float((gray <= threshold).mean())
    scalars = [
        threshold / 255.0,
        dark,
        float(magnitude.mean()) / EDGE_RANGE,
        float(magnitude.std()) / EDGE_RANGE,
    ]
    return np.concatenate([density, scalars])


def group_features(gray: np.ndarray, group: FeatureGroup, settings: FeatureSettings) -> np.ndarray:
    """One group's vector for an already preprocessed grayscale image."""
    if group == "histogram":
        return grey_histogram(gray, settings.histogram_bins)
    if group == "glcm":
        return glcm_statistics(
            gray,
            levels=settings.glcm_levels,
            distances_px=settings.glcm_distances_px,
            angles=settings.glcm_angles,
        )
    if group == "lbp":
        return lbp_histogram(gray, settings.lbp_points_radius)
    if group == "hog":
        return pooled_hog(
            gray,
            orientations=settings.hog_orientations,
            cell_px=settings.hog_cell_px,
            block_cells=settings.hog_block_cells,
        )
    return edge_statistics(gray, settings.edge_bins)


def prepare(image: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Grayscale, padded to the smallest workable size, blurred: the image every group reads."""
    return gaussian_blur(pad_to_min_size(to_gray(image), settings.min_side_px), settings.blur_sigma_px)


def extract(image: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """The full float64 feature vector of one image, groups in ``settings.layout()`` order."""
    gray = prepare(image, settings)
    vector = np.concatenate([group_features(gray, g, settings) for g in settings.groups])
    if vector.shape != (settings.length,):  # a settings/extractor mismatch is a bug, not bad input
        raise AssertionError(f"feature vector has {vector.shape[0]} columns, layout says {settings.length}")
    return vector
