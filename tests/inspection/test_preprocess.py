"""Preprocessing ops on real NEU-DET images: shapes and dtypes kept, and each op does what it claims."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.settings import ConfigError, load_config, validate_config
from inspection.preprocess import PreprocessConfig, build_preprocess


def build(*ops: dict) -> callable:
    return build_preprocess(validate_config(PreprocessConfig, {"ops": list(ops)}))


@pytest.fixture(scope="module")
def gray(neu_root: Path) -> np.ndarray:
    """An 800x800 grayscale mosaic of 16 real NEU-DET images (a frame, not a single tile)."""
    names = sorted(p.name for p in (neu_root / "images").glob("*.jpg"))[::90][:16]
    images = [cv2.imread(str(neu_root / "images" / n), cv2.IMREAD_GRAYSCALE) for n in names]
    return np.vstack([np.hstack(images[r * 4 : r * 4 + 4]) for r in range(4)])


@pytest.fixture(scope="module")
def crazing(neu_root: Path) -> np.ndarray:
    return cv2.imread(str(neu_root / "images" / "crazing_2.jpg"), cv2.IMREAD_GRAYSCALE)


OPS = [
    {"op": "flat_field"},
    {"op": "flat_field", "estimate": "columns"},
    {"op": "clahe"},
    {"op": "equalize_hist"},
    {"op": "gaussian_blur", "sigma": 1.5},
    {"op": "median_blur", "ksize": 5},
]


@pytest.mark.parametrize("op", OPS, ids=lambda op: "-".join(str(v) for v in op.values()))
@pytest.mark.parametrize("color", [False, True], ids=["gray", "bgr"])
def test_ops_keep_shape_and_dtype_and_never_write_the_input(gray: np.ndarray, op: dict, color: bool) -> None:
    image = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if color else gray.copy()
    image.setflags(write=False)  # frames are read-only: an op writing in place would raise
    out = build(op)(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)  # it did something


def test_no_ops_is_the_identity(gray: np.ndarray) -> None:
    assert build_preprocess(PreprocessConfig())(gray) is gray


def test_rejects_non_uint8_input(gray: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8"):
        build({"op": "clahe"})(gray.astype(np.float32))


def vignette(shape: tuple[int, int]) -> np.ndarray:
    """Illumination falling from 1.0 in the centre to 0.45 in the corners (a lamp and a lens)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    return 1.0 - 0.275 * r2


@pytest.fixture(scope="module")
def surface(neu_root: Path) -> np.ndarray:
    """800x800 of one steel surface: a real NEU-DET image mirrored 4x4 (no seams, even lighting)."""
    image = cv2.imread(str(neu_root / "images" / "pitted_surface_4.jpg"), cv2.IMREAD_GRAYSCALE)
    row = np.hstack([image, image[:, ::-1]] * 2)
    return np.vstack([row, row[::-1]] * 2)


def region_means(image: np.ndarray, n: int = 8) -> np.ndarray:
    h, w = image.shape
    return image.astype(np.float32).reshape(n, h // n, n, w // n).mean(axis=(1, 3))


def detail(image: np.ndarray) -> np.ndarray:
    values = image.astype(np.float32)
    return (values - cv2.GaussianBlur(values, (0, 0), 3)).ravel()


def test_flat_field_estimated_by_blur_removes_vignetting(surface: np.ndarray) -> None:
    shaded = np.clip(surface * vignette(surface.shape), 0, 255).astype(np.uint8)
    flat_field = build({"op": "flat_field", "sigma_px": 60})
    out, reference = flat_field(shaded), flat_field(surface)
    # relative brightness (image / its mean): with the vignetting removed, the shaded surface comes out
    # like the evenly lit one
    rel = lambda im: im.astype(np.float32) / im.mean()  # noqa: E731
    before = float(np.abs(rel(shaded) - rel(surface)).mean())
    after = float(np.abs(rel(out) - rel(reference)).mean())
    assert before > 0.08
    assert after < 0.3 * before
    assert np.corrcoef(detail(out), detail(surface))[0, 1] > 0.9  # texture survives


def test_flat_field_by_columns_removes_a_gradient_across_the_web(surface: np.ndarray) -> None:
    gain = np.linspace(0.5, 1.0, surface.shape[1], dtype=np.float32)[None, :]  # lamp brighter on one side
    shaded = np.clip(surface * gain, 0, 255).astype(np.uint8)
    out = build({"op": "flat_field", "estimate": "columns"})(shaded)
    col = lambda im: im.astype(np.float32).mean(axis=0)  # noqa: E731
    assert np.ptp(col(shaded)) > 40  # the gradient is there before ...
    assert np.ptp(col(out)) <= 2  # ... and gone after
    assert abs(float(out.mean()) - float(shaded.mean())) < 2  # overall brightness kept
    assert np.corrcoef(detail(out), detail(surface))[0, 1] > 0.9


@pytest.mark.parametrize("flat_rows", [None, 16], ids=["full-flat", "line-profile-flat"])
def test_flat_field_with_references_recovers_the_surface(
    gray: np.ndarray, tmp_path: Path, flat_rows: int | None
) -> None:
    dark_level = 12.0
    gain = (
        vignette(gray.shape)
        if flat_rows is None
        else np.tile(np.linspace(0.5, 1.0, gray.shape[1]), (gray.shape[0], 1))
    )
    gain = gain.astype(np.float32)
    observed = np.clip(dark_level + gray * gain * 0.9, 0, 255).astype(np.uint8)
    flat = np.clip(dark_level + 200 * gain, 0, 255).astype(np.uint8)  # a uniform white target
    if flat_rows is not None:
        flat = flat[:flat_rows]  # a line-scan camera's reference: a few lines, averaged to a column profile
    cv2.imwrite(str(tmp_path / "flat.png"), flat)
    np.save(tmp_path / "dark.npy", np.full(gray.shape[1], dark_level, np.float32))
    out = build({"op": "flat_field", "flat": str(tmp_path / "flat.png"), "dark": str(tmp_path / "dark.npy")})(
        observed
    )
    # (I - D) / (F - D) * mean(F - D) = surface * 0.9 * mean(gain): the gain pattern is gone
    expected = gray.astype(np.float32) * 0.9 * float(np.mean(flat.astype(np.float32) - dark_level)) / 200
    err = np.abs(out.astype(np.float32) - expected)
    assert np.percentile(err, 99) <= 3.0


def test_flat_field_reference_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.png"):
        build({"op": "flat_field", "flat": str(tmp_path / "missing.png")})


def local_contrast(image: np.ndarray) -> float:
    """Mean standard deviation of 20x20 blocks."""
    h, w = image.shape
    blocks = image.astype(np.float32)[: h // 20 * 20, : w // 20 * 20].reshape(h // 20, 20, w // 20, 20)
    return float(blocks.std(axis=(1, 3)).mean())


def test_clahe_increases_local_contrast(crazing: np.ndarray) -> None:
    out = build({"op": "clahe", "clip_limit": 3.0, "tile_grid": [4, 4]})(crazing)
    assert local_contrast(out) > 1.5 * local_contrast(crazing)


def test_clahe_on_colour_frames_changes_lightness_only(crazing: np.ndarray) -> None:
    bgr = cv2.cvtColor(crazing, cv2.COLOR_GRAY2BGR)
    out = build({"op": "clahe"})(bgr)
    assert out.shape == bgr.shape
    # a gray image stays gray: all three channels equal (within colour-conversion rounding)
    assert np.abs(out.astype(int) - out[..., :1].astype(int)).max() <= 2
    assert local_contrast(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)) > local_contrast(crazing)


def test_equalize_hist_spreads_the_histogram_and_keeps_the_order(crazing: np.ndarray) -> None:
    out = build({"op": "equalize_hist"})(crazing)
    assert np.ptp(crazing) < 200 and out.min() <= 5 and out.max() == 255
    assert out.std() > 2 * crazing.std()
    order = np.argsort(crazing.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # a monotone grey-level mapping


def test_gaussian_blur_removes_fine_detail(gray: np.ndarray) -> None:
    out = build({"op": "gaussian_blur", "sigma": 2.0})(gray)
    lap = lambda im: cv2.Laplacian(im, cv2.CV_32F).var()  # noqa: E731
    assert lap(out) < 0.2 * lap(gray)
    assert abs(float(out.mean()) - float(gray.mean())) < 1


def test_median_blur_removes_salt_and_pepper_noise(gray: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    noisy = gray.copy()
    spots = rng.random(gray.shape)
    noisy[spots < 0.02] = 0
    noisy[spots > 0.98] = 255
    out = build({"op": "median_blur", "ksize": 3})(noisy)
    outliers = lambda im: float(np.mean(np.abs(im.astype(np.float32) - gray) > 60))  # noqa: E731
    assert outliers(noisy) > 0.02
    assert outliers(out) < 0.1 * outliers(noisy)


@pytest.mark.parametrize(
    ("params", "expected_hw"),
    [
        ({"scale": 0.5}, (400, 400)),
        ({"width": 300}, (300, 300)),
        ({"width": 640, "height": 480}, (480, 640)),
        ({"height": 100}, (100, 100)),
    ],
)
def test_resize_is_bicubic_to_the_requested_size(gray: np.ndarray, params: dict, expected_hw: tuple) -> None:
    out = build({"op": "resize", **params})(gray)
    assert out.shape == expected_hw and out.dtype == np.uint8
    np.testing.assert_array_equal(out, cv2.resize(gray, expected_hw[::-1], interpolation=cv2.INTER_CUBIC))


def test_grayscale_converts_bgr_and_passes_gray(gray: np.ndarray, neu_root: Path) -> None:
    bgr = cv2.imread(str(neu_root / "images" / "patches_2.jpg"), cv2.IMREAD_COLOR)
    op = build({"op": "grayscale"})
    np.testing.assert_array_equal(op(bgr), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    assert op(gray) is gray


def test_ops_apply_in_config_order(gray: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "pre.yaml"
    path.write_text("ops:\n  - {op: resize, scale: 0.5}\n  - {op: equalize_hist}\n", encoding="utf-8")
    cfg = load_config(path, PreprocessConfig)
    expected = cv2.equalizeHist(cv2.resize(gray, (400, 400), interpolation=cv2.INTER_CUBIC))
    np.testing.assert_array_equal(build_preprocess(cfg)(gray), expected)


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ({"op": "sharpen"}, "ops.0"),
        ({"op": "median_blur", "ksize": 4}, "odd"),
        ({"op": "gaussian_blur", "sigma": 0}, "is not > 0"),
        ({"op": "resize", "scale": 0.5, "width": 10}, "not both"),
        ({"op": "resize"}, "not both or neither"),
        ({"op": "clahe", "clip": 2}, "unknown key"),
        ({"op": "clahe", "tile_grid": [0, 8]}, "positive"),
    ],
)
def test_bad_op_configs_fail_before_any_work(op: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(PreprocessConfig, {"ops": [op]})
