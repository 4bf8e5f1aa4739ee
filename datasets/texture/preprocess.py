"""Preprocessing for texture features: grayscale, Gaussian blur, Sobel edges, Otsu threshold.

The daemon has its own configurable ops (``inspection.preprocess``), but ``datasets`` may not import
``inspection``; these four are the small, fixed subset the features need, all OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` from ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` BGR/RGB (NEU stores R == G == B)."""
    if image.dtype != np.uint8:
        raise ValueError(f"texture features need uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 2:
        return image
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def gaussian_blur(gray: np.ndarray, sigma_px: float) -> np.ndarray:
    """Blur with a Gaussian of ``sigma_px`` (kernel sized by OpenCV); ``sigma_px == 0`` returns the input."""
    if sigma_px <= 0:
        return gray
    return cv2.GaussianBlur(gray, (0, 0), sigmaX=sigma_px, borderType=cv2.BORDER_REFLECT_101)


def sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    """Gradient magnitude ``sqrt(gx^2 + gy^2)`` of 3x3 Sobel filters, float32 ``(H, W)``."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    return cv2.magnitude(gx, gy)


def otsu_threshold(gray: np.ndarray) -> int:
    """Otsu's grey level that best splits the image into dark and bright pixels (0..255)."""
    value, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return int(value)


def pad_to_min_size(gray: np.ndarray, min_px: int) -> np.ndarray:
    """Reflect-pad a crop smaller than ``min_px`` on a side; never resized, so the texture keeps its scale."""
    h, w = gray.shape
    if h >= min_px and w >= min_px:
        return gray
    dy, dx = max(0, min_px - h), max(0, min_px - w)
    # BORDER_REFLECT_101 cannot pad more than the image size, BORDER_WRAP can (tiny crops are rare).
    mode = cv2.BORDER_REFLECT_101 if dy < h and dx < w else cv2.BORDER_WRAP
    return cv2.copyMakeBorder(gray, dy // 2, dy - dy // 2, dx // 2, dx - dx // 2, mode)
