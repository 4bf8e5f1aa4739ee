"""Clean tiles in training and evaluation: zero-box training images, the detector's own check against
NEU's missed labels, and stray detections per 100 clean tiles.

Tiles come from ``steel data background`` (torch-free, in ``datasets``); what needs a model lives here.
A tile is served as its mirrored canvas (the model's tile side, source pixel pitch: never up-scaled).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from datasets.background import CleanTile, read_background, read_gray_image, tiles_of
from datasets.detections import Detections
from datasets.model import ImageRecord
from training.config import BackgroundConfig
from training.inference import Predictor


@dataclass(frozen=True, slots=True)
class CleanCanvas:
    """One clean tile as the detector sees it: uint8 (S, S) canvas and where the real crop lies."""

    tile: CleanTile
    image: np.ndarray
    crop_xyxy: tuple[int, int, int, int]


def load_canvases(folder: str | Path, sources: set[str] | None = None) -> list[CleanCanvas]:
    """The canvases of a tile set, optionally only those cut from images named in ``sources``."""
    folder = Path(folder)
    summary, tiles = read_background(folder)
    side = int(summary["rule"]["canvas_px"])
    if sources is not None:
        tiles = tiles_of(tiles, sources)
    out = []
    for tile in tiles:
        off = (side - tile.side) // 2
        crop = (off, off, off + tile.side, off + tile.side)
        out.append(CleanCanvas(tile, read_gray_image(folder / "canvas" / tile.file), crop))
    return out


class ImageDetector(Protocol):
    """What ``training.inference.Predictor`` offers here: detections per image, at its score threshold."""

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


def detections_on(predictor: ImageDetector, canvases: Sequence[CleanCanvas]) -> list[Detections]:
    """Detections per canvas at the predictor's score threshold (``training.inference.Predictor``)."""
    return predictor([c.image for c in canvases])


def strays_per_100(detections: Sequence[Detections], threshold: float | np.ndarray) -> float:
    """Detections at ``score >= threshold`` per 100 clean tiles (each one a false alarm); an array is a
    threshold per class id (a bundle's operating point)."""
    if not detections:
        return 0.0
    per_class = np.asarray(threshold, dtype=np.float32)
    strays = sum(
        int((d.scores >= (per_class[d.class_ids] if per_class.ndim else per_class)).sum()) for d in detections
    )
    return 100.0 * strays / len(detections)


def strays_on_real_crops(
    canvases: Sequence[CleanCanvas], detections: Sequence[Detections], threshold: float
) -> tuple[int, float]:
    """Strays whose box centre lies on the real crop (not its mirrored padding) and the crops' area in
    canvases' worth of pixels: ``(strays, canvas_areas)``.

    A canvas is mostly mirrored copies of a small crop (64-128 px in 200): a box there sees the crop's
    texture again or the mirror's seam, so per 100 canvases understates what a line would see per area.
    """
    strays, area = 0, 0.0
    for canvas, dets in zip(canvases, detections, strict=True):
        x1, y1, x2, y2 = canvas.crop_xyxy
        area += (x2 - x1) * (y2 - y1) / float(canvas.image.shape[0] * canvas.image.shape[1])
        boxes = dets.xyxy[dets.scores >= threshold]
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        strays += int(((cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)).sum())
    return strays, area


def detector_check(
    canvases: Sequence[CleanCanvas], detections: Sequence[Detections], min_score: float
) -> tuple[list[CleanCanvas], list[CleanCanvas]]:
    """Split tiles into (kept, dropped): dropped where the detector finds a box at ``>= min_score``.

    A confident box on a "clean" tile is most often a defect NEU's annotators missed; training on it as
    background would teach the model to ignore that defect.
    """
    kept: list[CleanCanvas] = []
    dropped: list[CleanCanvas] = []
    for canvas, det in zip(canvases, detections, strict=True):
        (dropped if bool((det.scores >= min_score).any()) else kept).append(canvas)
    return kept, dropped


def background_records(
    cfg: BackgroundConfig, *, train_sources: set[str], n_train: int
) -> tuple[list[ImageRecord], dict[str, Any]]:
    """Zero-box training records for ``cfg.share`` of the training set, cut only from training images.

    Returns the records (canvas files, no boxes) and facts for the bundle manifest.
    """
    if not cfg.path or cfg.share <= 0:
        return [], {}
    folder = Path(cfg.path)
    summary, tiles = read_background(folder)
    tiles = tiles_of(tiles, train_sources)
    available = len(tiles)
    dropped = 0
    if cfg.check_bundle:
        canvases = load_canvases(folder, train_sources)
        predictor = Predictor(cfg.check_bundle, device="cpu", score_threshold=cfg.check_score)
        kept, gone = detector_check(canvases, detections_on(predictor, canvases), cfg.check_score)
        tiles, dropped = [c.tile for c in kept], len(gone)
    wanted = round(cfg.share * n_train / (1.0 - cfg.share))
    chosen = random.Random(cfg.seed).sample(tiles, min(wanted, len(tiles)))
    side = int(summary["rule"]["canvas_px"])
    records = [
        ImageRecord(name=f"background/{t.file}", width=side, height=side, path=folder / "canvas" / t.file)
        for t in sorted(chosen, key=lambda t: t.file)
    ]
    info = {
        "path": str(folder),
        "share": cfg.share,
        "tiles_from_train_images": available,
        "dropped_by_detector_check": dropped,
        "used": len(records),
    }
    return records, info
