"""Calibration on a new line: thresholds that hold a false-alarm budget on the line's own clean steel.

The line's frames known to be good are cut into the daemon's tiles. The detector scores them with a low
threshold; for each class, the threshold is raised to the lowest value at which that class puts at most
its share of the budget (``budget / classes`` per 1,000 tiles) on them, never lowered below the bundle's
operating point. The anomaly model's threshold is set the same way from its tile scores. What this costs
is measured on the validation split (recall of the boxes, share of defect images the anomaly model flags).

The result is a new bundle version (copy of the source with the new thresholds; weights untouched),
registered like a retrain result: promote it with ``steel models activate VERSION``, and roll back the
same way. Per-class thresholds go to the manifest's ``thresholds.per_class`` (what the detector applies);
``thresholds.calibration`` records how they were chosen.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from datasets.background import read_gray_image
from datasets.detections import Detections
from inspection.tiling import cut_tiles, tile_grid

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MANIFEST_METHOD = "clean-steel false-alarm budget"  # thresholds.calibration.method of `steel calibrate`


def clean_frames(folder: Path) -> list[np.ndarray]:
    """Every frame in ``folder`` (uint8 gray); a bad file is named."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return [read_gray_image(path) for path in files]


def tiles_of(
    frames: Sequence[np.ndarray], tile_hw: tuple[int, int], overlap_hw: tuple[int, int]
) -> list[np.ndarray]:
    """The frames cut into the daemon's tiles."""
    tiles: list[np.ndarray] = []
    for image in frames:
        tiles.extend(cut_tiles(image, tile_grid(image.shape[:2], tile_hw, overlap_hw), tile_hw))
    return tiles


def clean_tiles(folder: Path, tile_hw: tuple[int, int], overlap_hw: tuple[int, int]) -> list[np.ndarray]:
    """Every frame in ``folder`` cut into the daemon's tiles (uint8 gray); a bad file is named."""
    return tiles_of(clean_frames(folder), tile_hw, overlap_hw)


def class_thresholds(
    detections: Sequence[Detections],
    class_names: Sequence[str],
    *,
    budget_per_1000: float,
    floor: float,
) -> dict[str, float]:
    """Per class: the lowest threshold (>= ``floor``) with at most ``budget/classes`` alarms per 1,000 tiles.

    An alarm is a detection with ``score >= threshold``; with ties the threshold moves just above the tie.
    """
    n_tiles = max(1, len(detections))
    allowed = math.floor(budget_per_1000 / len(class_names) * n_tiles / 1000.0)
    out: dict[str, float] = {}
    for k, name in enumerate(class_names):
        scores = np.sort(np.concatenate([d.scores[d.class_ids == k] for d in detections] or [np.zeros(0)]))[
            ::-1
        ]
        if len(scores) <= allowed:
            out[name] = floor
            continue
        # the (allowed+1)-th highest score must not alarm: threshold just above it
        out[name] = max(floor, float(np.nextafter(np.float32(scores[allowed]), np.float32(1.0))))
    return out


def alarms_per_1000(
    detections: Sequence[Detections], thresholds: dict[str, float], names: list[str]
) -> float:
    n = sum(
        int((d.scores >= np.array([thresholds[names[int(c)]] for c in d.class_ids])).sum())
        for d in detections
        if len(d)
    )
    return 1000.0 * n / max(1, len(detections))


def apply_class_thresholds(det: Detections, thresholds: dict[str, float], names: Sequence[str]) -> Detections:
    """The detections at or above their class's threshold (classes not named keep everything)."""
    if not len(det):
        return det
    limits = np.array([thresholds.get(names[int(c)], 0.0) for c in det.class_ids], dtype=np.float32)
    return det[np.flatnonzero(det.scores >= limits)]


@dataclass
class CalibrationResult:
    source_version: str
    version: str
    clean_tiles: int
    budget_per_1000: float
    before: dict[str, float]
    after: dict[str, float]
    detector_alarms_per_1000: dict[str, float]
    anomaly: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    budget_per_100m: float | None = None  # the budget as asked per 100 m of strip (None: per 1,000 tiles)
    strip: dict[str, Any] = field(default_factory=dict)  # geometry and alarms per 100 m of strip

    def manifest_field(self) -> dict[str, Any]:
        return {
            "class_score_thresholds": self.after,
            "budget_per_1000_tiles": self.budget_per_1000,
            "budget_per_100m": self.budget_per_100m,
            "strip": self.strip,
            "clean_tiles": self.clean_tiles,
            "calibrated_from": self.source_version,
            "detector_alarms_per_1000": self.detector_alarms_per_1000,
            "anomaly": self.anomaly,
            "validation": self.validation,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def write_calibrated_bundle(src: Path, dst: Path, result: CalibrationResult) -> dict[str, Any]:
    """Copy ``src`` (weights, anomaly model) to ``dst`` with the new thresholds; returns the manifest.

    The global ``thresholds.score`` becomes the lowest per-class threshold (so a consumer that knows only
    the global one still sees every detection the per-class rule keeps).
    """
    # torch (seconds): the daemon's anomaly stage imports this module for apply_class_thresholds
    from training.anomaly.store import ANOMALY_JSON, BUNDLE_SUBDIR
    from training.bundle import MANIFEST, load_bundle, read_manifest

    manifest = read_manifest(src)
    tmp = dst.parent / f".{dst.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shutil.copy2(src / manifest["weights"]["file"], tmp / manifest["weights"]["file"])
    if (src / BUNDLE_SUBDIR / ANOMALY_JSON).is_file():
        shutil.copytree(src / BUNDLE_SUBDIR, tmp / BUNDLE_SUBDIR)
        if result.anomaly.get("threshold_after") is not None:
            amf = json.loads((tmp / BUNDLE_SUBDIR / ANOMALY_JSON).read_text(encoding="utf-8"))
            amf["threshold"] = {
                **amf.get("threshold", {}),
                "score": result.anomaly["threshold_after"],
                "budget_per_1000": result.budget_per_1000,
                "fitted_on": "steel calibrate --clean",
                "detection_evidence": result.anomaly["detection_evidence_after"],
                "detection_evidence_quantile": result.anomaly["detection_evidence_quantile"],
            }
            (tmp / BUNDLE_SUBDIR / ANOMALY_JSON).write_text(
                json.dumps(amf, indent=2) + "\n", encoding="utf-8"
            )
    arch = manifest["architecture"]
    section = arch.get(arch.get("family"), {})
    for key in ("weights", "weights_backbone"):
        if key in section:
            section[key] = None  # the bundle's own weights are complete
    manifest.update(version=result.version, name=result.version)
    # ``thresholds.per_class`` is the operating point the detector, `steel eval` and the reject rule apply.
    # ``thresholds.calibration`` says how they were chosen (it replaces any earlier calibration's record).
    manifest["thresholds"] = {
        **manifest["thresholds"],
        "score": min(result.after.values()),
        "per_class": dict(result.after),
        "calibration": {"method": MANIFEST_METHOD, **result.manifest_field()},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    load_bundle(tmp)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.replace(dst)
    return read_manifest(dst)
