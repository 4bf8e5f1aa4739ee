"""The steps of ``steel calibrate``: score the clean tiles, set thresholds, price them on validation,
write and register the new bundle version.

Imports torch and the detector at the top: only ``steel calibrate`` imports this module, when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datasets.background import read_gray_image
from datasets.detections import Detections
from datasets.readers import read_dataset
from datasets.settings import data_root
from datasets.split import apply_split, read_split
from inspection.calibration import (
    CalibrationResult,
    alarms_per_1000,
    apply_class_thresholds,
    class_thresholds,
    clean_frames,
    tiles_of,
    write_calibrated_bundle,
)
from inspection.calibration_budget import StripGeometry
from inspection.config import InspectionConfig
from inspection.storage.db import upgrade
from inspection.storage.model_registry import active_model, register_model_version
from inspection.storage.repository import Repository
from training.anomaly.calibrate import (
    EVIDENCE_QUANTILE,
    evidence_level,
    false_alarms_per_1000,
    threshold_for_budget,
    tile_scores,
)
from training.anomaly.store import find_anomaly_dir, load_anomaly
from training.evaluation import GroundTruth, Prediction, evaluate
from training.inference import Predictor

LOW_SCORE = 0.01  # score the clean tiles this low, so every threshold above it can be priced


def _source_bundle(cfg: InspectionConfig, model: Path | None, repository: Repository) -> Path:
    if model is not None:
        return model
    with repository.transaction() as session:
        active = active_model(session)
    if active is not None and active.path and Path(active.path).is_dir():
        return Path(active.path)
    return Path(cfg.detector.model)


def run_calibration(
    cfg: InspectionConfig,
    *,
    clean: Path,
    defects: Path | None,
    model: Path | None,
    budget: float | None,
    version: str,
    registry: Path,
    split: Path,
    stamp: str,
    budget_per_100m: float | None = None,
) -> tuple[CalibrationResult, Path]:
    """``budget`` false alarms per 1,000 clean tiles, or ``budget_per_100m`` per 100 m of strip (the
    config's frame geometry converts it); one of them, 1 per 1,000 tiles when neither is given."""
    repository = Repository(cfg.db)
    upgrade(repository.engine)
    src = _source_bundle(cfg, model, repository)
    predictor = Predictor(str(src), device="cpu", score_threshold=LOW_SCORE)
    names = predictor.class_names
    manifest = predictor.bundle.manifest
    floor = float(manifest["thresholds"]["score"])
    current = predictor.bundle.class_thresholds(None)  # the bundle's operating point, per class
    before = {n: float(t) for n, t in zip(names, current, strict=True)}

    frames = clean_frames(clean)
    tiles = tiles_of(frames, cfg.tiling.tile_hw, cfg.tiling.overlap_hw)
    geometry = _geometry(cfg, frames)
    budget = _per_1000_tiles(geometry, budget, budget_per_100m)
    dets = predictor(tiles)
    after = class_thresholds(dets, names, budget_per_1000=budget, floor=floor)
    after = {n: max(t, before[n]) for n, t in after.items()}  # never below the bundle's operating point
    result = CalibrationResult(
        source_version=predictor.version,
        version=version or f"{predictor.version}-cal{stamp}",
        clean_tiles=len(tiles),
        budget_per_1000=budget,
        before=before,
        after=after,
        detector_alarms_per_1000={
            "before": alarms_per_1000(dets, before, names),
            "after": alarms_per_1000(dets, after, names),
        },
    )
    val_images = _price_on_validation(result, predictor, split, defects)
    result.anomaly = _calibrate_anomaly(src, tiles, val_images, budget)
    result.budget_per_100m = budget_per_100m
    result.strip = _strip_record(geometry, budget, result)
    target = registry / result.version
    registry.mkdir(parents=True, exist_ok=True)
    written = write_calibrated_bundle(src, target, result)
    with repository.transaction() as session:
        register_model_version(session, written, str(target.resolve()))
    return result, target


def _geometry(cfg: InspectionConfig, frames: list[np.ndarray]) -> StripGeometry:
    """The strip geometry of the line: the config's pitch and tiling, the clean frames' (median) width."""
    return StripGeometry(
        mm_per_line=cfg.mm_per_line,
        mm_per_px=cfg.mm_per_px,
        frame_width_px=int(np.median([f.shape[1] for f in frames])),
        tile_hw=cfg.tiling.tile_hw,
        overlap_hw=cfg.tiling.overlap_hw,
    )


def _price_on_validation(
    result: CalibrationResult, predictor: Predictor, split: Path, defects: Path | None
) -> list[np.ndarray]:
    """Box recall before and after on the split's validation side (and ``--defects``) into
    ``result.validation``; returns the validation images (the anomaly model is priced on them too)."""
    names, before, after = predictor.class_names, result.before, result.after
    val_paths, val_gts = _validation(split)
    val_images = [read_gray_image(p) for p in val_paths]
    result.validation["neu_val"] = _recall_cost(predictor(val_images), val_gts, names, before, after)
    if defects is not None:
        images, gts = _annotated(defects)
        result.validation["line_defects"] = _recall_cost(predictor(images), gts, names, before, after)
    return val_images


def _per_1000_tiles(geometry: StripGeometry, budget: float | None, per_100m: float | None) -> float:
    if budget is not None and per_100m is not None:
        raise ValueError("give --budget (per 1,000 tiles) or --budget-per-100m, not both")
    if per_100m is not None:
        return geometry.per_1000_tiles(per_100m)
    return 1.0 if budget is None else budget


def _strip_record(geometry: StripGeometry, budget: float, result: CalibrationResult) -> dict[str, Any]:
    """The geometry, the budget and the alarms before/after per 100 m of strip (the calibration record)."""
    a = result.anomaly
    return {
        **geometry.to_dict(),
        "budget_per_100m": round(geometry.per_100m(budget), 4),
        "detector_alarms_per_100m": {
            k: round(geometry.per_100m(v), 3) for k, v in result.detector_alarms_per_1000.items()
        },
        "anomaly_alarms_per_100m": {
            k: None if a.get(f"alarms_{k}") is None else round(geometry.per_100m(a[f"alarms_{k}"]), 3)
            for k in ("before", "after")
        },
    }


def _recall_cost(
    dets: list[Detections],
    gts: list[tuple[np.ndarray, np.ndarray]],
    names: list[str],
    before: dict[str, float],
    after: dict[str, float],
) -> dict[str, Any]:
    truth = [GroundTruth(b, lab) for b, lab in gts]
    out: dict[str, Any] = {"images": len(gts)}
    for key, thresholds in (("recall_before", before), ("recall_after", after)):
        kept = [apply_class_thresholds(d, thresholds, names) for d in dets]
        preds = [Prediction(d.xyxy, d.scores, d.class_ids) for d in kept]
        out[key] = float(evaluate(truth, preds, names, conf_threshold=1e-6).recall)
    out["recall_cost"] = out["recall_before"] - out["recall_after"]
    return out


def _calibrate_anomaly(
    src: Path, tiles: list[np.ndarray], defect_images: list[np.ndarray], budget: float
) -> dict[str, Any]:
    if find_anomaly_dir(src) is None:
        return {}
    model = load_anomaly(src)
    scores = tile_scores(model.scorer, tiles)
    before = model.threshold
    after = threshold_for_budget(scores, budget)
    defect_scores = tile_scores(model.scorer, defect_images)
    quantile = model.manifest.get("threshold", {}).get("detection_evidence_quantile", EVIDENCE_QUANTILE)
    return {
        "threshold_before": before,
        "threshold_after": after,
        "detection_evidence_before": model.detection_evidence,
        "detection_evidence_after": evidence_level(scores, quantile),  # of the line's own clean steel
        "detection_evidence_quantile": quantile,
        "alarms_before": false_alarms_per_1000(scores, before) if before is not None else None,
        "alarms_after": false_alarms_per_1000(scores, after),
        "neu_val_defect_images_flagged_before": (
            float(np.mean([s > before for s in defect_scores])) if before is not None else None
        ),
        "neu_val_defect_images_flagged_after": float(np.mean([s > after for s in defect_scores])),
        "resolution_per_1000": 1000.0 / len(scores),  # fewer tiles than 1000/budget: bounded only by this
    }


def _validation(split: Path) -> tuple[list[Path], list[tuple[np.ndarray, np.ndarray]]]:
    aset = read_dataset(data_root() / "annotations")
    _, val = apply_split(aset, read_split(split))
    return _records(val.images, aset.class_names)


def _annotated(folder: Path) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    aset = read_dataset(folder)
    paths, gts = _records([im for im in aset.images if im.path is not None], aset.class_names)
    return [read_gray_image(p) for p in paths], gts


def _records(
    images: list, class_names: tuple[str, ...]
) -> tuple[list[Path], list[tuple[np.ndarray, np.ndarray]]]:
    index = {n: i for i, n in enumerate(class_names)}
    paths = [Path(im.path) for im in images]
    gts = [
        (
            np.array([b.xyxy for b in im.boxes], np.float32).reshape(-1, 4),
            np.array([index[b.label] for b in im.boxes], np.int64),
        )
        for im in images
    ]
    return paths, gts
