"""Frame preprocessing from config: a list of OpenCV ops applied in order.

Every op takes and returns uint8 ``(H, W)`` grayscale or ``(H, W, 3)`` BGR; only ``resize`` changes
``H, W`` and only ``grayscale`` changes the channels. A resize changes what a frame pixel means, so
the caller maps boxes back with ``sx = in_w / out_w, sy = in_h / out_h`` (or leaves resizing to the
model's own input transform).

Flat-field correction removes fixed illumination and sensor patterns (vignetting, a lamp brighter in
the middle of the web): ``out = (I - dark) / (flat - dark) * mean(flat - dark)``, so a uniform
surface comes out uniform and the mean brightness is kept. The references come from files when the
line has them (images or ``.npy``; a reference whose height differs from the frame's, e.g. a few
hundred lines of a line-scan camera, is averaged over its rows into a per-column profile). Without a
flat reference it is estimated from the frame itself: ``estimate="columns"`` uses the per-column
mean (right for line-scan cameras, whose illumination varies across the web only);
``estimate="blur"`` uses a Gaussian blur with ``sigma_px`` much larger than any defect (right for
area cameras' 2-D vignetting). Estimation also flattens defects larger than the blur, so keep
``sigma_px`` several times the largest defect. The blur runs on a shrunken copy (sigma 8 px there),
because a 300 px kernel at full size would cost more than the model.

Example config::

    preprocess:
      ops:
        - {op: flat_field, estimate: columns}
        - {op: clahe, clip_limit: 2.0, tile_grid: [8, 8]}
        - {op: median_blur, ksize: 3}
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from datasets.settings import ConfigError, StrictModel

Image = np.ndarray
Op = Callable[[Image], Image]


class GrayscaleOp(StrictModel):
    """BGR -> gray (a gray frame passes unchanged)."""

    op: Literal["grayscale"]


class FlatFieldOp(StrictModel):
    """Flat-field correction (see the module docstring)."""

    op: Literal["flat_field"]
    flat: Path | None = Field(None, description="flat reference (image or .npy); None = estimate it")
    dark: Path | None = Field(None, description="dark reference (image or .npy); None = zero")
    estimate: Literal["blur", "columns"] = "blur"
    sigma_px: float = Field(50.0, gt=0, description="blur sigma when estimating the flat")


class ClaheOp(StrictModel):
    """Contrast-limited adaptive histogram equalisation (on L of Lab for colour frames)."""

    op: Literal["clahe"]
    clip_limit: float = Field(2.0, gt=0)
    tile_grid: tuple[int, int] = (8, 8)

    @field_validator("tile_grid")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 1:
            raise ValueError(f"tile_grid must be positive, got {v}")
        return v


class EqualizeHistOp(StrictModel):
    """Global histogram equalisation (on Y of YCrCb for colour frames)."""

    op: Literal["equalize_hist"]


class GaussianBlurOp(StrictModel):
    op: Literal["gaussian_blur"]
    sigma: float = Field(1.0, gt=0)
    ksize: int = Field(0, ge=0, description="odd kernel size; 0 = from sigma")

    @field_validator("ksize")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v and v % 2 == 0:
            raise ValueError(f"ksize must be odd or 0, got {v}")
        return v


class MedianBlurOp(StrictModel):
    op: Literal["median_blur"]
    ksize: int = Field(3, ge=3)

    @field_validator("ksize")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"ksize must be odd, got {v}")
        return v


class ResizeOp(StrictModel):
    """Bicubic resize to ``width`` x ``height`` (one given: keep the aspect ratio) or by ``scale``."""

    op: Literal["resize"]
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    scale: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> ResizeOp:
        if (self.scale is None) == (self.width is None and self.height is None):
            raise ValueError("resize needs either scale or width/height, not both or neither")
        return self

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        if self.scale is not None:
            return max(1, round(h * self.scale)), max(1, round(w * self.scale))
        if self.width is not None and self.height is not None:
            return self.height, self.width
        if self.width is not None:
            return max(1, round(h * self.width / w)), self.width
        assert self.height is not None
        return self.height, max(1, round(w * self.height / h))


OpConfig = Annotated[
    GrayscaleOp | FlatFieldOp | ClaheOp | EqualizeHistOp | GaussianBlurOp | MedianBlurOp | ResizeOp,
    Field(discriminator="op"),
]


class PreprocessConfig(StrictModel):
    """Ops applied in order; an empty list leaves frames unchanged."""

    ops: list[OpConfig] = Field(default_factory=list)


def _to_u8(values: np.ndarray) -> Image:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _load_reference(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            ref = np.load(path, allow_pickle=False)
        else:
            data = np.fromfile(str(path), dtype=np.uint8)
            ref = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"preprocess flat_field: cannot read reference {path}: {exc}") from None
    if ref is None or ref.size == 0:
        raise ConfigError(f"preprocess flat_field: cannot decode reference {path}")
    ref = np.asarray(ref, dtype=np.float32)
    if ref.ndim == 1:
        ref = ref[None, :]
    if ref.ndim == 3 and ref.shape[2] == 4:
        ref = ref[..., :3]
    return ref


def _fit_reference(ref: np.ndarray, image: Image) -> np.ndarray:
    """``ref`` shaped to broadcast against ``image``: same ``H`` or a per-column profile ``(1, W)``."""
    h, w = image.shape[:2]
    if ref.shape[1] != w:
        raise ValueError(f"flat_field: reference is {ref.shape[1]} px wide, frame {w} px")
    if ref.shape[0] != h:
        ref = ref.mean(axis=0, keepdims=True)
    if image.ndim == 3 and ref.ndim == 2:
        ref = ref[..., None]
    elif image.ndim == 2 and ref.ndim == 3:
        ref = ref.mean(axis=2)
    return ref


def estimate_flat(image: Image, *, estimate: str, sigma_px: float) -> np.ndarray:
    """The illumination of ``image`` as float32, by per-column mean or a large (shrunken) Gaussian blur."""
    values = image.astype(np.float32)
    if estimate == "columns":
        return values.mean(axis=0, keepdims=True)
    h, w = image.shape[:2]
    factor = max(1.0, sigma_px / 8.0)
    small_wh = (max(1, round(w / factor)), max(1, round(h / factor)))
    small = cv2.resize(values, small_wh, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma_px / factor, borderType=cv2.BORDER_REFLECT)
    flat = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return flat.reshape(values.shape)


def _flat_field(cfg: FlatFieldOp) -> Op:
    flat_ref = _load_reference(cfg.flat) if cfg.flat is not None else None
    dark_ref = _load_reference(cfg.dark) if cfg.dark is not None else None

    def apply(image: Image) -> Image:
        values = image.astype(np.float32)
        dark = _fit_reference(dark_ref, image) if dark_ref is not None else np.float32(0.0)
        if flat_ref is not None:
            flat = _fit_reference(flat_ref, image)
        else:
            flat = estimate_flat(image, estimate=cfg.estimate, sigma_px=cfg.sigma_px)
        gain = np.maximum(flat - dark, 1.0)  # a dead (black) reference pixel must not divide by ~0
        return _to_u8((values - dark) / gain * float(np.mean(gain)))

    return apply


def _grayscale(image: Image) -> Image:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def _on_luma(fn: Op, to: int, back: int) -> Op:
    def apply(image: Image) -> Image:
        if image.ndim == 2:
            return fn(image)
        converted = cv2.cvtColor(image, to)
        converted[..., 0] = fn(np.ascontiguousarray(converted[..., 0]))
        return cv2.cvtColor(converted, back)

    return apply


def _resize(cfg: ResizeOp) -> Op:
    def apply(image: Image) -> Image:
        h, w = cfg.out_hw(*image.shape[:2])
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)

    return apply


def _compile(cfg: StrictModel) -> Op:
    if isinstance(cfg, GrayscaleOp):
        return _grayscale
    if isinstance(cfg, FlatFieldOp):
        return _flat_field(cfg)
    if isinstance(cfg, ClaheOp):
        clahe = cv2.createCLAHE(clipLimit=cfg.clip_limit, tileGridSize=tuple(cfg.tile_grid))
        return _on_luma(clahe.apply, cv2.COLOR_BGR2LAB, cv2.COLOR_LAB2BGR)
    if isinstance(cfg, EqualizeHistOp):
        return _on_luma(cv2.equalizeHist, cv2.COLOR_BGR2YCrCb, cv2.COLOR_YCrCb2BGR)
    if isinstance(cfg, GaussianBlurOp):
        sigma, k = cfg.sigma, cfg.ksize
        return lambda image: cv2.GaussianBlur(image, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    if isinstance(cfg, MedianBlurOp):
        k = cfg.ksize
        return lambda image: cv2.medianBlur(image, k)
    if isinstance(cfg, ResizeOp):
        return _resize(cfg)
    raise TypeError(f"unknown preprocess op {cfg!r}")  # pragma: no cover - the union is closed


def build_preprocess(cfg: PreprocessConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Compile ``cfg`` into one function ``image -> image`` (references are read here, once).

    The function takes uint8 ``(H, W)`` or ``(H, W, 3)`` and returns a new uint8 array (the input,
    unchanged, when there are no ops); it never writes into its input.

    Raises:
        ConfigError: a flat/dark reference cannot be read.
    """
    ops = [_compile(op) for op in cfg.ops]

    def preprocess(image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(
                f"preprocess: expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}"
            )
        for op in ops:
            image = op(image)
        return image

    return preprocess
