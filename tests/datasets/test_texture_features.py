"""Texture features against values worked out by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops

from datasets.background import read_gray_image
from datasets.texture.features import (
    edge_statistics,
    extract,
    glcm_statistics,
    glcm_statistics_many,
    grey_histogram,
    haralick_properties,
    lbp_codes,
    lbp_histogram,
    pooled_hog,
    quantise,
)
from datasets.texture.preprocess import pad_to_min_size
from datasets.texture.settings import GLCM_PROPS, FeatureSettings


def test_grey_histogram_of_a_half_black_half_white_image() -> None:
    gray = np.array([[0, 0, 255, 255]] * 4, dtype=np.uint8)
    out = grey_histogram(gray, bins=4)
    # bins: v * 4 // 256 -> 0 for 0, 3 for 255; half the pixels each
    np.testing.assert_allclose(out[:4], [0.5, 0.0, 0.0, 0.5])
    # mean 0.5, std 0.5, symmetric (skew 0), two-point distribution: E[z^4] = 1, excess kurtosis -2
    np.testing.assert_allclose(out[4:], [0.5, 0.5, 0.0, -2.0], atol=1e-12)


def test_grey_histogram_of_a_flat_image_has_no_shape_moments() -> None:
    out = grey_histogram(np.full((3, 5), 100, np.uint8), bins=8)
    assert out[100 * 8 // 256] == 1.0
    np.testing.assert_allclose(out[8:], [100 / 255, 0.0, 0.0, 0.0], atol=1e-12)


def test_glcm_statistics_of_the_textbook_4x4_image() -> None:
    levels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]])
    gray = (levels * 64).astype(np.uint8)  # quantised back to 0..3 with 4 levels
    out = glcm_statistics(gray, levels=4, distances_px=(1,), angles=1)
    # Right-neighbour pairs counted both ways (symmetric), 24 in all:
    p = np.array([[4, 2, 1, 0], [2, 4, 0, 0], [1, 0, 6, 1], [0, 0, 1, 2]]) / 24
    contrast = (2 * 1 + 1 * 4 + 2 * 1 + 1 * 4 + 1 * 1 + 1 * 1) / 24  # sum p (i-j)^2 = 14/24
    dissimilarity = (2 + 2 + 2 + 2 + 1 + 1) / 24  # sum p |i-j| = 10/24
    homogeneity = (16 + 6 / 2 + 2 / 5) / 24  # diagonal 16, |i-j| = 1: 6 pairs, |i-j| = 2: 2 pairs
    energy = math.sqrt(84) / 24  # sqrt(sum p^2): squares of the counts add up to 84
    i, j = np.indices(p.shape)
    mu, var = (i * p).sum(), ((i - (i * p).sum()) ** 2 * p).sum()
    correlation = ((i - mu) * (j - mu) * p).sum() / var
    # one angle: each property's mean is the value and its range over angles is 0
    expected = [contrast, 0, dissimilarity, 0, homogeneity, 0, energy, 0, correlation, 0]
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_haralick_properties_match_scikit_image_on_real_steel_and_on_a_flat_window(neu_root) -> None:
    files = sorted((neu_root / "images").iterdir())[::150][:8]
    windows = [read_gray_image(f)[:128, 40:168] for f in files] + [np.full((64, 64), 90, np.uint8)]
    thetas = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    for window in windows:
        matrix = graycomatrix(quantise(window, 32), [1, 2, 4], thetas, 32, symmetric=True, normed=True)
        ours = haralick_properties(matrix)
        for prop in GLCM_PROPS:
            np.testing.assert_allclose(ours[prop], graycoprops(matrix, prop), rtol=1e-9, atol=1e-12)
    many = glcm_statistics_many(windows, levels=32, distances_px=(1, 2, 4), angles=4)
    one_by_one = [glcm_statistics(w, levels=32, distances_px=(1, 2, 4), angles=4) for w in windows]
    np.testing.assert_array_equal(many, np.array(one_by_one))


def test_lbp_codes_of_3x3_patches() -> None:
    # Neighbours >= centre: top row and left (diagonals interpolated: top-left 9, top-right ~6.8 stay
    # above 5, bottom ones ~2.3 and ~0.4 below) -> four contiguous ones: uniform, code 4.
    one_run = np.array([[9, 9, 9], [9, 5, 0], [0, 0, 0]], np.uint8)
    assert lbp_codes(one_run, 8, 1.0)[1, 1] == 4
    # Only top and bottom are >= centre: two separate runs, not uniform -> code points + 1 = 9.
    two_runs = np.array([[0, 9, 0], [0, 5, 0], [0, 9, 0]], np.uint8)
    assert lbp_codes(two_runs, 8, 1.0)[1, 1] == 9


def test_lbp_histogram_of_a_flat_image_is_all_code_points() -> None:
    # every neighbour equals its centre, so all eight bits are 1: the uniform code 8 on every pixel whose
    # circle is inside the image (the border ring would compare with scikit-image's zero padding)
    out = lbp_histogram(np.full((6, 6), 7, np.uint8), ((8, 1.0),))
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 0, 0, 0, 0, 1, 0])


def test_pooled_hog_of_a_vertical_step_is_all_horizontal_gradient() -> None:
    gray = np.zeros((8, 8), np.uint8)
    gray[:, 4:] = 255
    out = pooled_hog(gray, orientations=9, cell_px=4, block_cells=1)
    # every 4x4 cell holds one gradient column (x = 3 or x = 4) pointing along x: bin 0 only,
    # normalised to 1; so the mean over cells is one-hot and the std is zero
    np.testing.assert_allclose(out, [1, 0, 0, 0, 0, 0, 0, 0, 0] + [0] * 9, atol=1e-12)


def test_edge_statistics_of_a_vertical_step() -> None:
    gray = np.zeros((8, 8), np.uint8)
    gray[:, 4:] = 200
    out = edge_statistics(gray, bins=4)
    # Sobel x kernel sums 1+2+1 = 4 times the 200 step at columns 3 and 4: magnitude 800 there, 0 elsewhere
    np.testing.assert_allclose(out[:4], [0.75, 0, 0, 0.25])
    mean, std = 800 * 0.25, math.sqrt(800**2 * 0.25 - 200**2)
    # Otsu: every threshold in 0..199 splits the two levels equally well, OpenCV takes the first (0)
    np.testing.assert_allclose(out[4:], [0.0, 0.5, mean / 256, std / 256])


def test_default_layout_is_contiguous_and_sized_per_group() -> None:
    layout = FeatureSettings().layout()
    assert layout == {
        "histogram": (0, 36),  # 32 bins + 4 moments
        "glcm": (36, 66),  # 5 properties x 3 distances x (mean, range)
        "lbp": (66, 120),  # (8+2) + (16+2) + (24+2) uniform codes
        "hog": (120, 138),  # 9 orientations x (mean, std)
        "edges": (138, 158),  # 16 bins + 4 scalars
    }


def test_settings_put_groups_in_canonical_order_and_reject_repeats() -> None:
    assert FeatureSettings(groups=("lbp", "glcm")).groups == ("glcm", "lbp")
    with pytest.raises(ValueError, match="without repeats"):
        FeatureSettings(groups=("lbp", "lbp"))


def test_small_crops_are_padded_not_resized() -> None:
    crop = np.arange(20, dtype=np.uint8).reshape(4, 5)
    padded = pad_to_min_size(crop, 8)
    assert padded.shape == (8, 8)
    np.testing.assert_array_equal(padded[2:6, 1:6], crop)  # the original pixels, untouched, in the middle


def test_a_crop_padded_to_the_minimum_side_keeps_a_whole_lbp_circle_for_a_fractional_radius() -> None:
    """Radius 2.5 reaches 3 px (ceil), though round(2.5) is 2: the minimum side must leave pixels whose
    whole circle lies inside, or the LBP histogram is 0/0 (NaN columns that poison the linear model)."""
    settings = FeatureSettings(
        lbp_points_radius=((8, 2.5),), glcm_distances_px=(1,), hog_cell_px=2, hog_block_cells=1
    )
    vector = extract(np.full((4, 4), 90, np.uint8), settings)
    assert np.all(np.isfinite(vector))
    assert settings.min_side_px == 7
