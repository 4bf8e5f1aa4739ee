"""What ``steel calibrate-thresholds`` does: score a labelled set with a bundle, choose a threshold per
class (:mod:`training.operating_point`) and write them into the bundle's manifest.

The manifest gets ``thresholds.per_class`` and ``thresholds.calibration`` (method, target, the images it
was chosen on, what each class reached), and a new ``version``: the operating point changes what the
line rejects, so the model registry must not see the recalibrated bundle as the same version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from datasets.split import read_split
from training.background import load_canvases
from training.bundle import read_manifest, rewrite_manifest
from training.eval_inputs import GroundTruth, Prediction
from training.evaluate_cli import Scored, evaluate_at_bundle_point, print_eval
from training.evaluation import EvalResult, evaluate
from training.operating_point import CalibrationConfig, OperatingPoint, calibrate

OP_SUFFIX = "-op"


@dataclass(frozen=True)
class CalibrationReport:
    before: EvalResult
    after: EvalResult
    point: OperatingPoint
    version: str  # the bundle's version with this operating point
    written: bool


def calibrated_version(base_version: str, per_class: dict[str, float]) -> str:
    """``<base>-op<6 hex>``: the same thresholds always give the same version (recalibrating to the same
    point is idempotent), different ones a different version."""
    digest = hashlib.sha256(json.dumps(per_class, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{base_version}{OP_SUFFIX}{digest[:6]}"


def write_operating_point(bundle_dir: Path, point: OperatingPoint, *, data: str) -> str:
    """Store ``point`` in the bundle's manifest; returns the new version."""
    manifest = read_manifest(bundle_dir)
    thresholds = dict(manifest["thresholds"])
    previous = thresholds.get("calibration") or {}
    base = str(previous.get("base_version") or manifest["version"])
    version = calibrated_version(base, point.per_class)
    thresholds["per_class"] = dict(point.per_class)
    thresholds["calibration"] = {
        **point.config.model_dump(mode="json"),
        "images": point.images,
        "data": data,
        "achieved": dict(point.achieved),
        "base_version": base,
        "calibrated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    manifest["thresholds"] = thresholds
    manifest["version"] = version
    rewrite_manifest(bundle_dir, manifest)
    return version


def with_clean_tiles(scored: Scored, folder: Path, split: Path | None) -> Scored:
    """``scored`` plus the clean tiles of a ``steel data background`` folder as defect-free images (only
    those cut from the split's val images when a split is given): their detections count as strays, so
    the ``line`` method also weighs what the rule would reject on clean steel."""
    sources = set(read_split(split).val) if split is not None else None
    canvases = load_canvases(folder, sources)
    if not canvases:
        where = " cut from the split's val images" if split is not None else ""
        raise ValueError(f"{folder}: no clean tiles{where} (--clean)")
    detections = scored.predictor([c.image for c in canvases])
    return Scored(
        predictor=scored.predictor,
        gts=[*scored.gts, *(GroundTruth(np.zeros((0, 4)), np.zeros(0, np.int64)) for _ in canvases)],
        preds=[*scored.preds, *(Prediction(d.xyxy, d.scores, d.class_ids) for d in detections)],
        data=f"{scored.data} + {len(canvases)} clean tiles of {folder}",
    )


def run_calibration(scored: Scored, cfg: CalibrationConfig, *, write: bool) -> CalibrationReport:
    """Calibrate on ``scored``; line figures at the bundle's current point and at the new one."""
    names = scored.predictor.class_names
    before = evaluate_at_bundle_point(scored)
    point = calibrate(scored.gts, scored.preds, names, cfg)
    after = evaluate(
        scored.gts,
        scored.preds,
        names,
        conf_threshold=scored.predictor.bundle.score_threshold,
        per_class_thresholds=point.per_class,
    )
    bundle_dir = scored.predictor.bundle.path
    if write:
        version = write_operating_point(bundle_dir, point, data=scored.data)
    else:
        base = (scored.predictor.bundle.manifest["thresholds"].get("calibration") or {}).get("base_version")
        version = calibrated_version(str(base or scored.predictor.version), point.per_class)
    return CalibrationReport(before=before, after=after, point=point, version=version, written=write)


def report_dict(report: CalibrationReport) -> dict[str, object]:
    """The ``--json`` shape: the thresholds, and the line figures before and after."""

    def figures(result: EvalResult) -> dict[str, object]:
        d = result.to_dict()
        keep = ("operating_point", "reject_recall", "reject_recall_per_class", "stray_per_100_images")
        return {k: d[k] for k in (*keep, "precision", "recall", "f1")}

    return {
        "version": report.version,
        "written": report.written,
        "method": report.point.config.method,
        "per_class": report.point.per_class,
        "achieved": report.point.achieved,
        "before": figures(report.before),
        "after": figures(report.after),
    }


def print_report(report: CalibrationReport, manifest: Path) -> None:
    """The two evaluation tables (before, after) and where the operating point went."""
    print("before (the bundle's operating point so far):")
    print_eval(report.before)
    print("after:")
    print_eval(report.after)
    state = "written to" if report.written else "not written (--dry-run) to"
    print(f"operating point {state} {manifest}; version {report.version}")
