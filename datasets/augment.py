"""The albumentations pipeline built from config, shared by both detectors.

Augmentations are chosen for steel-surface defects: the texture has no canonical orientation, so flips
and 90-degree rotations are label-preserving (and box-exact on square images); lighting varies along a
line, so brightness/contrast, mild sensor noise and slight blur are realistic. Every geometric transform
keeps boxes exact; crop (off by default) is the only one that can cut a box, and boxes left with less
than ``min_visibility`` of their area are dropped with their labels.

Crop is ``RandomResizedCrop`` back to ``image_size`` (not ``RandomSizedBBoxSafeCrop``): NEU-DET boxes
often span most of the image, so a box-safe crop would almost never crop; ``min_visibility`` decides
what a cut box still counts as.

Pipelines never hold lambdas, so they pickle into ``DataLoader`` workers. Note that albumentations 2.x
ignores the global ``numpy``/``random`` seeds: each ``Compose`` owns its generators. Its own
``set_random_seed`` gives every transform an identical generator (so ``hflip`` and ``vflip`` at equal
``p`` fire together); :func:`reseed_transform` shares one generator instead.
"""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
from pydantic import Field, model_validator

from datasets.settings import StrictModel

__all__ = ["MOSAIC_KEY", "AugmentConfig", "build_transform", "mosaic_partners", "reseed_transform"]

MOSAIC_KEY = "mosaic_metadata"  # the call's keyword for the other images a Mosaic draws from


class AugmentConfig(StrictModel):
    """Training augmentation for defect detection; probabilities are per image."""

    enabled: bool = True
    hflip_p: float = Field(default=0.5, ge=0.0, le=1.0)
    vflip_p: float = Field(default=0.5, ge=0.0, le=1.0)
    rot90_p: float = Field(default=0.5, ge=0.0, le=1.0)
    brightness_contrast_p: float = Field(default=0.5, ge=0.0, le=1.0)
    brightness_limit: float = Field(default=0.2, ge=0.0, le=1.0)
    contrast_limit: float = Field(default=0.2, ge=0.0, le=1.0)
    noise_p: float = Field(default=0.2, ge=0.0, le=1.0)
    noise_std_range: tuple[float, float] = (0.01, 0.05)
    """Gaussian noise std as a fraction of 255 (albumentations 2.x ``std_range``)."""
    blur_p: float = Field(default=0.1, ge=0.0, le=1.0)
    blur_limit: int = Field(default=3, ge=3, le=31)
    """Largest (odd) box-blur kernel; kernels are drawn from ``3..blur_limit``."""
    clahe_p: float = Field(default=0.0, ge=0.0, le=1.0)
    clahe_clip_limit: float = Field(default=2.0, ge=1.0, le=40.0)
    crop_p: float = Field(default=0.0, ge=0.0, le=1.0)
    crop_scale: tuple[float, float] = (0.6, 1.0)
    """Crop area as a fraction of the image area (``RandomResizedCrop`` ``scale``)."""
    crop_ratio: tuple[float, float] = (0.75, 4.0 / 3.0)
    min_visibility: float = Field(default=0.3, ge=0.0, le=1.0)
    """A box cut by a crop is kept only if this fraction of its area remains."""
    copy_paste_p: float = Field(default=0.0, ge=0.0, le=1.0)
    """Paste 1..``copy_paste_max`` boxed defects cut from other training images into this one (also into
    clean background tiles), before the pipeline (``datasets.copy_paste``; the training data set does it)."""
    copy_paste_max: int = Field(default=2, ge=1, le=8)
    mosaic_p: float = Field(default=0.0, ge=0.0, le=1.0)
    """2 x 2 mosaic of this image and three others of the set (albumentations ``Mosaic``), cropped back to
    the input size at a random centre; first in the pipeline, so the other ops see the mosaic."""
    close_mosaic_epochs: int = Field(default=0, ge=0)
    """Mosaic and copy-paste off for the last this many epochs (the trainer switches them), so a run
    ends on whole images as validation and the line see them; the other augmentations stay on."""

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentConfig:
        # Pure checks; messages name the field so a YAML user can find it.
        _check_range("noise_std_range", self.noise_std_range, low=0.0, high=1.0)
        _check_range("crop_scale", self.crop_scale, low=0.0, high=1.0, open_low=True)
        _check_range("crop_ratio", self.crop_ratio, low=0.0, high=float("inf"), open_low=True)
        if self.blur_limit % 2 == 0:
            raise ValueError(f"blur_limit: {self.blur_limit} must be odd")
        return self


def _check_range(
    name: str, value: tuple[float, float], *, low: float, high: float, open_low: bool = False
) -> None:
    lo, hi = value
    low_ok = lo > low if open_low else lo >= low
    if not (low_ok and lo <= hi <= high):
        bound = f"({low}" if open_low else f"[{low}"
        raise ValueError(f"{name}: {value!r} must satisfy {bound} <= min <= max <= {high}]")


def _bbox_params(min_visibility: float) -> A.BboxParams:
    # clip: boxes touching the border (x2 == width) stay valid after float round trips;
    # filter_invalid_bboxes: a degenerate box is dropped instead of raising mid-epoch.
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_visibility=min_visibility,
        clip=True,
        filter_invalid_bboxes=True,
    )


def build_transform(
    cfg: AugmentConfig | None, *, image_size: int, train: bool, seed: int | None = None
) -> A.Compose:
    """Build the pipeline applied to uint8 images (HxW or HxWx3) with ``pascal_voc`` boxes.

    Call it as ``t(image=img, bboxes=boxes_xyxy, labels=labels)``. Eval mode (or ``cfg`` ``None`` or
    ``enabled`` off) only resizes to ``image_size`` (a no-op when the image already has that size).

    Args:
        cfg: Augmentation settings; ``None`` means no augmentation.
        image_size: Output side length in pixels (square).
        train: Whether to add the random augmentations.
        seed: Seed for the pipeline's own generator; ``None`` draws from OS entropy.

    Returns:
        A picklable ``Compose`` whose transforms share one random generator.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    cfg = cfg if cfg is not None else AugmentConfig(enabled=False)
    ops: list[A.BasicTransform] = [A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR)]
    if train and cfg.enabled:
        ops += _train_ops(cfg, image_size)
    min_visibility = cfg.min_visibility if train and cfg.enabled else 0.0
    compose = A.Compose(ops, bbox_params=_bbox_params(min_visibility))
    reseed_transform(compose, seed)
    return compose


def _train_ops(cfg: AugmentConfig, image_size: int) -> list[A.BasicTransform]:
    # Geometry first (box-exact), then photometry; a transform with p == 0 is left out entirely.
    side = (image_size, image_size)
    candidates: list[tuple[float, A.BasicTransform]] = [
        (
            cfg.mosaic_p,
            A.Mosaic(
                grid_yx=(2, 2), target_size=side, cell_shape=side, metadata_key=MOSAIC_KEY, p=cfg.mosaic_p
            ),
        ),
        (
            cfg.crop_p,
            A.RandomResizedCrop(
                size=(image_size, image_size),
                scale=cfg.crop_scale,
                ratio=cfg.crop_ratio,
                interpolation=cv2.INTER_LINEAR,
                p=cfg.crop_p,
            ),
        ),
        (cfg.hflip_p, A.HorizontalFlip(p=cfg.hflip_p)),
        (cfg.vflip_p, A.VerticalFlip(p=cfg.vflip_p)),
        (cfg.rot90_p, A.RandomRotate90(p=cfg.rot90_p)),
        (
            cfg.brightness_contrast_p,
            A.RandomBrightnessContrast(
                brightness_limit=cfg.brightness_limit,
                contrast_limit=cfg.contrast_limit,
                p=cfg.brightness_contrast_p,
            ),
        ),
        (cfg.clahe_p, A.CLAHE(clip_limit=(1.0, cfg.clahe_clip_limit), p=cfg.clahe_p)),
        (cfg.blur_p, A.Blur(blur_limit=(3, cfg.blur_limit), p=cfg.blur_p)),
        # per_channel off: grayscale stored as RGB keeps R == G == B.
        (cfg.noise_p, A.GaussNoise(std_range=cfg.noise_std_range, per_channel=False, p=cfg.noise_p)),
    ]
    return [op for p, op in candidates if p > 0.0]


def mosaic_partners(transform: object) -> int:
    """How many other images ``transform``'s Mosaic needs beside the one it is called on (0: none)."""
    if isinstance(transform, A.Compose):
        for op in transform.transforms:
            if isinstance(op, A.Mosaic):
                rows, cols = op.grid_yx
                return int(rows * cols - 1)
    return 0


def reseed_transform(transform: A.BaseCompose, seed: int | None) -> None:
    """Give every transform in ``transform`` one shared generator seeded with ``seed``.

    Used at build time and by ``DataLoader`` workers (each worker gets a copy of the same state and
    must reseed, or all workers would produce identical augmentations).
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
