"""Anomaly stage: every frame gets an anomaly score; a region above the calibrated threshold that no
detection covers becomes an ``anomaly`` defect, stored and tracked like any other class.

Sits between merge and track. The frame is cut into the same tiles as for the detector, each tile gets
an anomaly map from the model trained on clean steel only (``training.anomaly``), and a tile's regions
above the threshold (calibrated to a false-alarm budget on clean tiles, stored with the model) are
compared with the frame's detections: a region that overlaps a detection is already explained.

The stage also applies the per-class score thresholds ``steel calibrate`` writes into the detector
bundle's manifest (``thresholds.per_class``), read again whenever the model changes.

The anomaly's detection score is ``s / (s + threshold)``: 0.5 at the threshold, rising towards 1, so
it sorts and filters like a detector score. Its class id is one past the detector's classes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from datasets.detections import Detections
from datasets.settings import StrictModel
from inspection.calibration import apply_class_thresholds
from inspection.messages import FrameDetections
from inspection.metrics import DaemonMetrics
from inspection.queues import BoundedQueue
from inspection.stages.anomaly_evidence import MAP_META_KEY, frame_map, frame_map_u8
from inspection.stages.base import Stage
from inspection.tiling import cut_tiles, tile_grid
from inspection.tracking import iou_one_to_many
from training.anomaly.base import box_evidence, tile_score
from training.anomaly.calibrate import anomaly_regions

if TYPE_CHECKING:  # the model's module pulls in torch: imported for real only in load()
    from training.anomaly.store import AnomalyModel


class AnomalyStageConfig(StrictModel):
    """``anomaly:`` in the inspection config."""

    enabled: bool = True
    model: str | None = None  # anomaly folder; None: ``<detector bundle>/anomaly`` when it exists
    threshold: float | None = Field(None, gt=0)  # None: the threshold calibrated into the model
    min_area_px: int = Field(64, ge=1)  # smaller regions above the threshold are ignored
    explained_iou: float = Field(0.0, ge=0, lt=1)  # a region overlapping a detection by more is explained
    backend: Literal["auto", "torch"] = "auto"  # auto: the backbone stages under ONNX Runtime when installed
    threads: int | None = Field(None, ge=1, le=1024)  # ONNX Runtime intra-op threads (None: its default)
    # A detection whose box shows less anomaly than this is dropped: steel no more unusual than most clean
    # tiles (README "Clean steel and anomalies"). None: the level stored with the model; veto off: never.
    veto_detections: bool = True
    detection_evidence: float | None = Field(None, ge=0)


@dataclass
class AnomalyTally:
    """Per-run figures for the daemon summary (``anomalies`` in ``steel inspect --json``)."""

    model_version: str | None = None
    threshold: float | None = None
    frames: int = 0
    scores: list[float] = field(default_factory=list)
    above_threshold_frames: int = 0
    regions: int = 0
    explained: int = 0
    anomaly_defects: int = 0
    detection_evidence: float | None = None
    vetoed_detections: int = 0

    def to_dict(self) -> dict:
        s = np.asarray(self.scores, dtype=np.float64)
        return {
            "model_version": self.model_version,
            "threshold": self.threshold,
            "frames_scored": self.frames,
            "score_max": round(float(s.max()), 4) if s.size else None,
            "score_p50": round(float(np.percentile(s, 50)), 4) if s.size else None,
            "score_p99": round(float(np.percentile(s, 99)), 4) if s.size else None,
            "frames_above_threshold": self.above_threshold_frames,
            "regions": self.regions,
            "regions_explained_by_detections": self.explained,
            "anomaly_defects": self.anomaly_defects,
            "detection_evidence": self.detection_evidence,
            "detections_vetoed": self.vetoed_detections,
        }


def resolve_anomaly_model(cfg: AnomalyStageConfig, detector_bundle: str | Path | None) -> Path | None:
    """The anomaly folder to load, or None (stage passes frames through, scoring nothing)."""
    # the store loads torch (seconds) and inspection.config imports this module: here, not at the top
    from training.anomaly.store import find_anomaly_dir

    if not cfg.enabled:
        return None
    if cfg.model:
        found = find_anomaly_dir(cfg.model)
        if found is None:
            raise FileNotFoundError(f"anomaly.model: {cfg.model} holds no anomaly.json")
        return found
    return find_anomaly_dir(detector_bundle) if detector_bundle else None


class AnomalyStage(Stage[FrameDetections]):
    accepts = (FrameDetections,)

    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: BoundedQueue,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        cfg: AnomalyStageConfig,
        model_path: Path | None,
        tile_hw: tuple[int, int],
        overlap_hw: tuple[int, int],
        anomaly_class_id: int,
        class_names: list[str],
        detector_manifest: Callable[[], dict],
    ) -> None:
        super().__init__("anomaly", inbox, outbox, abort=abort, metrics=metrics)
        self.cfg = cfg
        self.tile_hw = tile_hw
        self.overlap_hw = overlap_hw
        self.class_id = anomaly_class_id
        self.tally = AnomalyTally()
        self.class_names = class_names
        self.detector_manifest = detector_manifest
        self._thresholds_of: str | None = None  # the model version the class thresholds were read from
        self.class_thresholds: dict[str, float] = {}
        self._model: AnomalyModel | None = None
        self.model_path = model_path
        self.threshold: float | None = None

    def load(self) -> None:
        """Load the model (outside the constructor: no I/O there). Without a model frames pass through."""
        if self.model_path is None:
            return
        from training.anomaly.store import load_anomaly  # torch (seconds): only a stage with a model loads it

        model = load_anomaly(self.model_path, backend=self.cfg.backend, threads=self.cfg.threads)
        threshold = self.cfg.threshold or model.threshold
        if threshold is None:
            raise ValueError(f"{self.model_path}: anomaly.json has no threshold.score; run `steel calibrate`")
        self._model, self.threshold = model, float(threshold)
        self.tally.model_version, self.tally.threshold = model.manifest["version"], self.threshold
        if self.cfg.veto_detections:
            explicit = self.cfg.detection_evidence
            self.tally.detection_evidence = model.detection_evidence if explicit is None else explicit

    def _calibrated(self, msg: FrameDetections) -> FrameDetections:
        """Drop detections below their class's calibrated threshold (when the bundle has them)."""
        if msg.model_version != self._thresholds_of:
            manifest = self.detector_manifest() or {}
            self.class_thresholds = dict((manifest.get("thresholds") or {}).get("per_class") or {})
            self._thresholds_of = msg.model_version
        if not self.class_thresholds:
            return msg
        return replace(
            msg, detections=apply_class_thresholds(msg.detections, self.class_thresholds, self.class_names)
        )

    def handle(self, msg: FrameDetections) -> Iterable[FrameDetections]:
        msg = self._calibrated(msg)
        if self._model is None:
            return [msg]
        threshold = self.threshold
        assert threshold is not None, "load() sets the threshold with the model"
        frame = msg.frame
        grid = tile_grid((frame.height, frame.width), self.tile_hw, self.overlap_hw)
        tiles = cut_tiles(frame.image, grid, self.tile_hw)
        maps = self._model.scorer.maps(list(tiles))
        scores = [tile_score(m) for m in maps]
        frame_score = max(scores) if scores else 0.0
        found = []
        for (x0, y0), amap in zip(grid, maps, strict=True):
            for region in anomaly_regions(amap, threshold, min_area_px=self.cfg.min_area_px):
                x1, y1, x2, y2 = region.xyxy
                found.append(((x1 + x0, y1 + y0, x2 + x0, y2 + y0), region.score))
        veto = self.tally.detection_evidence is not None and len(msg.detections) > 0
        # the stitched map only where it is read: the veto, or an anomaly defect's evidence crop
        full = frame_map(maps, grid, (frame.height, frame.width)) if veto or found else None
        if veto:
            assert full is not None
            msg = self._vetoed(msg, full)
        new = self._unexplained(found, msg.detections, frame.width, frame.height)
        self._count(frame_score, found, new)
        meta = {**frame.meta, "anomaly_score": frame_score, "anomaly_threshold": self.threshold}
        if len(new):  # the sink crops it beside each anomaly defect's crop (its evidence)
            assert full is not None, "a new anomaly defect comes from a found region"
            meta[MAP_META_KEY] = frame_map_u8(full, threshold)
        return [
            replace(msg, frame=replace(frame, meta=meta), detections=Detections.merge([msg.detections, new]))
        ]

    def _vetoed(self, msg: FrameDetections, full: np.ndarray) -> FrameDetections:
        """Drop the detections whose box shows less anomaly than the evidence level (when there is one)."""
        level = self.tally.detection_evidence
        assert level is not None, "handle() vetoes only with a level"
        keep = box_evidence(msg.detections.xyxy, full) >= level
        self.tally.vetoed_detections += int((~keep).sum())
        return msg if keep.all() else replace(msg, detections=msg.detections[keep])

    def _unexplained(self, found, detections: Detections, width: int, height: int) -> Detections:
        """Regions (frame pixels) that no detection overlaps, as ``anomaly`` detections."""
        keep_xyxy, keep_scores = [], []
        for xyxy, score in found:
            box = np.clip(np.asarray(xyxy, np.float32), 0, [width, height, width, height])
            if len(detections) and iou_one_to_many(box, detections.xyxy).max() > self.cfg.explained_iou:
                continue
            keep_xyxy.append(box)
            keep_scores.append(score / (score + self.threshold))
        if not keep_xyxy:
            return Detections.empty()
        return Detections(
            np.stack(keep_xyxy), np.asarray(keep_scores, np.float32), np.full(len(keep_xyxy), self.class_id)
        )

    def _count(self, frame_score: float, found: list, new: Detections) -> None:
        t = self.tally
        t.frames += 1
        t.scores.append(frame_score)
        t.above_threshold_frames += int(frame_score > (self.threshold or np.inf))
        t.regions += len(found)
        t.explained += len(found) - len(new)
        t.anomaly_defects += len(new)
