"""Copy-paste of defects: a boxed defect cut from one training image and pasted, edges feathered, into
another (often a clean background tile), with its box and class.

NEU-DET has boxes, not masks, so what is pasted is the whole box (defect and the steel around it inside
the box); feathering the box's border over a few pixels keeps the seam from becoming a cue. Written by
hand because albumentations' copy-paste needs instance masks. The paste position is the least covered of
a few random candidates, so a pasted defect rarely hides one already there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CANDIDATE_POSITIONS = 8


@dataclass(frozen=True)
class Donor:
    """An image (uint8 HxW or HxWxC, the model's input size) with its boxes (N, 4) and labels (N,)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def feather_mask(height: int, width: int, feather_px: int) -> np.ndarray:
    """float32 (H, W): 1 inside, falling linearly to ~0 over ``feather_px`` pixels at every border."""
    if feather_px <= 0:
        return np.ones((height, width), np.float32)
    ys = np.minimum(np.arange(height), np.arange(height)[::-1]) + 0.5
    xs = np.minimum(np.arange(width), np.arange(width)[::-1]) + 0.5
    return np.clip(np.minimum(ys[:, None], xs[None, :]) / feather_px, 0.0, 1.0).astype(np.float32)


def covered_share(box: np.ndarray, boxes: np.ndarray) -> float:
    """The largest share of any of ``boxes`` that ``box`` covers (0 when there are none)."""
    if len(boxes) == 0:
        return 0.0
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    return float((w * h / areas).max())


def paste_defects(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    donors: Sequence[Donor],
    rng: np.random.Generator,
    *,
    feather_px: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``image`` with one random box of each donor pasted in; the boxes and labels with theirs added."""
    out = image.copy()
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    height, width = image.shape[:2]
    for donor in donors:
        if len(donor.boxes) == 0:
            continue
        k = int(rng.integers(len(donor.boxes)))
        x0, y0, x1, y1 = np.round(donor.boxes[k]).astype(int)
        crop = donor.image[max(y0, 0) : y1, max(x0, 0) : x1]
        h, w = min(crop.shape[0], height), min(crop.shape[1], width)
        if h < 2 or w < 2:
            continue
        crop = crop[:h, :w]
        box = _place(rng, h, w, height, width, boxes)
        alpha = feather_mask(h, w, feather_px).reshape((h, w) + (1,) * (out.ndim - 2))
        px, py = int(box[0]), int(box[1])
        region = out[py : py + h, px : px + w].astype(np.float32)
        out[py : py + h, px : px + w] = np.rint(alpha * crop + (1 - alpha) * region).astype(np.uint8)
        boxes = np.vstack([boxes, box[None]])
        labels = np.append(labels, donor.labels[k])
    return out, boxes, labels


def _place(
    rng: np.random.Generator, h: int, w: int, height: int, width: int, boxes: np.ndarray
) -> np.ndarray:
    """The least-covering of a few random top-left corners, as an xyxy box (float32)."""
    best: np.ndarray | None = None
    best_cover = np.inf
    for _ in range(CANDIDATE_POSITIONS):
        x, y = int(rng.integers(width - w + 1)), int(rng.integers(height - h + 1))
        box = np.array([x, y, x + w, y + h], np.float32)
        cover = covered_share(box, boxes)
        if cover < best_cover:
            best, best_cover = box, cover
    assert best is not None
    return best
