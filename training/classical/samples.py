"""Labelled samples for the two classical tasks, and their feature matrix.

``image-class``: one sample per image, labelled with its dominant box label (the rule the split uses to
stratify; NEU's file-name class differs on 52 of the 1,440 development images, where boxes of another
class outnumber the file's own). Images without boxes have no class here and are skipped.
``defect-tile``: the clean and defect tiles of :mod:`training.classical.tiles`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from datasets.model import AnnotatedSet
from datasets.split import NO_BOXES, dominant_label
from datasets.texture.bundle import Task
from datasets.texture.features import extract
from datasets.texture.settings import FeatureSettings
from training.classical.tiles import TILE_CLASSES, TileRule, cut_tiles


@dataclass(frozen=True, slots=True)
class Sample:
    """One image or one tile of it (``window`` = ``x, y, w, h`` pixels; ``None`` for the whole image)."""

    path: Path
    label: str
    window: tuple[int, int, int, int] | None = None

    @property
    def name(self) -> str:
        if self.window is None:
            return self.path.name
        x, y, w, h = self.window
        return f"{self.path.name}@{x},{y},{w}x{h}"


def task_classes(task: Task, aset: AnnotatedSet) -> tuple[str, ...]:
    return TILE_CLASSES if task == "defect-tile" else tuple(aset.class_names)


def make_samples(aset: AnnotatedSet, task: Task, rule: TileRule | None = None) -> list[Sample]:
    """Samples in the set's image order; files missing are skipped (reported by the reader)."""
    out: list[Sample] = []
    for im in aset.images:
        if im.path is None:
            continue
        if task == "image-class":
            label = dominant_label(im)
            if label != NO_BOXES:
                out.append(Sample(im.path, label))
            continue
        for tile in cut_tiles(im.boxes, im.width, im.height, rule or TileRule()):
            out.append(Sample(im.path, tile.label, (tile.x, tile.y, tile.size, tile.size)))
    return out


def read_gray(path: Path) -> np.ndarray:
    """uint8 ``(H, W)``; an unreadable file is a ValueError naming it."""
    if not path.is_file():  # checked first: OpenCV would also print its own warning
        raise ValueError(f"{path}: no such image file")
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ValueError(f"{path}: cannot read this image")
    return gray


def feature_matrix(samples: list[Sample], settings: FeatureSettings, *, desc: str = "features") -> np.ndarray:
    """``(N, F)`` float64 features; each image file is decoded once even when it yields many tiles."""
    rows = np.empty((len(samples), settings.length), dtype=np.float64)
    cached: tuple[Path | None, np.ndarray | None] = (None, None)
    show = sys.stderr.isatty()
    for k, sample in enumerate(tqdm(samples, desc=desc, disable=not show, leave=False)):
        if cached[0] != sample.path:
            cached = (sample.path, read_gray(sample.path))
        gray = cached[1]
        assert gray is not None
        if sample.window is not None:
            x, y, w, h = sample.window
            gray = gray[y : y + h, x : x + w]
        rows[k] = extract(gray, settings)
    return rows
