"""Fitting an anomaly candidate on clean training tiles, calibrating it, and scoring it on validation.

Clean tiles: ``steel data background`` canvases cut from the split's training images (fit and threshold)
and from its validation images (false alarms). Defect tiles: the validation images themselves (every
NEU-DET image holds at least one defect), scored whole, their boxes giving the pixel labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets.background import read_gray_image
from datasets.model import ImageRecord
from training.anomaly.autoencoder import AutoencoderScorer, ConvAutoencoder
from training.anomaly.base import AnomalyScorer, tile_score
from training.anomaly.calibrate import (
    evidence_level,
    false_alarms_per_1000,
    pixel_auroc,
    threshold_for_budget,
    tile_auroc,
    tile_scores,
)
from training.anomaly.features import EarlyBackbone
from training.anomaly.gaussian import FeatureGaussian
from training.anomaly.texture import GlcmMemory, TextureFusedScorer
from training.anomaly.window_mean import WindowFusedScorer, WindowMeanMemory, grid_side
from training.background import load_canvases
from training.bundle import Bundle
from training.models.yolo.model import as_yolo

CANDIDATES = (  # kind[:last stage]
    "backbone-gaussian:3",
    "backbone-gaussian:4",
    "backbone-gaussian+glcm:3",
    "backbone-gaussian+window:3",
    "conv-autoencoder",
)


@dataclass
class CleanData:
    """uint8 clean canvases for fitting/calibration (train side) and for false alarms (val side)."""

    train: list[np.ndarray]
    train_crops: list[np.ndarray]
    val: list[np.ndarray]


@dataclass
class ValidationFigures:
    tile_auroc: float
    pixel_auroc: float
    threshold: float
    budget_per_1000: float
    calibration_tiles: int
    val_clean_tiles: int
    val_false_alarms_per_1000: float
    val_defect_tiles: int
    defect_tile_recall: float
    detection_evidence: float  # evidence_level of the calibration tiles
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra


def load_clean(tiles_dir: str | Path, *, train_names: set[str], val_names: set[str]) -> CleanData:
    train = load_canvases(tiles_dir, train_names)
    val = load_canvases(tiles_dir, val_names)
    crops = [c.image[c.crop_xyxy[1] : c.crop_xyxy[3], c.crop_xyxy[0] : c.crop_xyxy[2]] for c in train]
    return CleanData([c.image for c in train], crops, [c.image for c in val])


def fit_candidate(
    candidate: str,
    bundle: Bundle,
    clean: CleanData,
    *,
    ae_steps: int = 800,
    fit_tiles: int | None = None,
    input_size: int | None = None,
) -> FeatureGaussian | AutoencoderScorer | TextureFusedScorer | WindowFusedScorer:
    """A fitted scorer (``kind`` or ``kind:last_stage``; the Gaussian needs the detector's backbone, run
    at ``input_size`` px, default the detector's; ``fit_tiles`` None or 0: every clean training tile)."""
    kind, _, stage = candidate.partition(":")
    if kind in ("backbone-gaussian", "backbone-gaussian+glcm", "backbone-gaussian+window"):
        extractor = EarlyBackbone(as_yolo(bundle.model).backbone, last_stage=int(stage or 3))
        tiles = clean.train[:: max(1, len(clean.train) // fit_tiles)] if fit_tiles else clean.train
        gaussian = FeatureGaussian(extractor, input_size=input_size or bundle.image_size)
        gaussian.use_onnxruntime()  # as the daemon runs it (torch when onnxruntime is not installed)
        if kind == "backbone-gaussian":
            return gaussian.fit(tiles)
        if kind == "backbone-gaussian+window":
            window = WindowMeanMemory.for_grid(grid_side(gaussian.input_size))
            return WindowFusedScorer(gaussian, window).fit(tiles)
        return TextureFusedScorer(gaussian, GlcmMemory()).fit(tiles)
    if kind == "conv-autoencoder":
        return AutoencoderScorer(ConvAutoencoder()).fit(clean.train_crops, steps=ae_steps)
    raise ValueError(f"candidate: {candidate!r} is not one of {CANDIDATES}")


def validate(
    scorer: AnomalyScorer,
    clean: CleanData,
    defects: list[ImageRecord],
    *,
    budget_per_1000: float,
    calibration_tiles: int | None = None,
) -> ValidationFigures:
    """Threshold from the training clean tiles (every k-th from the 2nd when ``calibration_tiles`` is
    set, so not the ones a subsampled fit used); AUROCs, false alarms and recall on validation."""
    step = max(1, len(clean.train) // calibration_tiles) if calibration_tiles else 1
    calib = tile_scores(scorer, clean.train[min(1, step - 1) :: step])
    threshold = threshold_for_budget(calib, budget_per_1000)
    clean_scores = tile_scores(scorer, clean.val)
    images = [read_gray_image(rec.found_path()) for rec in defects]
    defect_maps = scorer.maps(images)
    defect_scores = [tile_score(m) for m in defect_maps]
    boxes = [np.array([b.xyxy for b in rec.boxes], np.float32).reshape(-1, 4) for rec in defects]
    return ValidationFigures(
        tile_auroc=tile_auroc(defect_scores, clean_scores),
        pixel_auroc=pixel_auroc(defect_maps, boxes),
        threshold=threshold,
        budget_per_1000=budget_per_1000,
        calibration_tiles=len(calib),
        val_clean_tiles=len(clean_scores),
        val_false_alarms_per_1000=false_alarms_per_1000(clean_scores, threshold),
        val_defect_tiles=len(defect_scores),
        defect_tile_recall=float(np.mean([s > threshold for s in defect_scores])),
        detection_evidence=evidence_level(calib),
        extra={"tile_auroc_by_class": _auroc_by_class(defects, defect_scores, clean_scores)},
    )


def _auroc_by_class(
    defects: list[ImageRecord], defect_scores: list[float], clean_scores: list[float]
) -> dict[str, float]:
    """Tile AUROC of each class's images (by the image's first box) against all the clean tiles."""
    by_class: dict[str, list[float]] = {}
    for rec, score in zip(defects, defect_scores, strict=True):
        if rec.boxes:
            by_class.setdefault(rec.boxes[0].label, []).append(score)
    return {name: tile_auroc(scores, clean_scores) for name, scores in sorted(by_class.items())}
