"""The daemon's stages and queues, built from the config: one place that says what feeds what."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inspection.alarm_dispatch import AlarmDispatcher
from inspection.config import InspectionConfig
from inspection.detector import TileDetector
from inspection.metrics import DaemonMetrics
from inspection.preprocess import build_preprocess
from inspection.queues import BoundedQueue
from inspection.sources.base import Source
from inspection.stages.anomaly import AnomalyStage, resolve_anomaly_model
from inspection.stages.anomaly_evidence import ANOMALY_CLASS
from inspection.stages.base import Stage
from inspection.stages.batch import BatchStage
from inspection.stages.detect import DetectStage
from inspection.stages.evidence import EvidenceOptions, EvidenceWriter
from inspection.stages.evidence_stage import EvidenceStage
from inspection.stages.merge import MergeStage
from inspection.stages.preprocess import PreprocessStage
from inspection.stages.sink import Geometry, SinkStage
from inspection.stages.source import SourceStage
from inspection.stages.tile import TileStage
from inspection.stages.track import TrackerOptions, TrackStage
from inspection.storage.writer import ResilientWriter

STAGE_ORDER = ("preprocess", "tile", "batch", "detect", "merge", "anomaly", "track", "evidence", "sink")


@dataclass(frozen=True)
class Pipeline:
    """The running parts: ``stages`` in pipeline order (the sink last), each reading ``queues[name]``."""

    source_stage: SourceStage
    stages: list[Stage]
    queues: dict[str, BoundedQueue]
    track_stage: TrackStage
    anomaly_stage: AnomalyStage
    sink: SinkStage


@dataclass(frozen=True)
class PipelineParts:
    """What the pipeline is built around (made by the daemon's start-up)."""

    source: Source
    skip: Callable[[int], bool]
    detector: TileDetector
    writer: ResilientWriter
    output_dir: Path
    stop: threading.Event
    abort: threading.Event
    metrics: DaemonMetrics | None


def build_pipeline(cfg: InspectionConfig, parts: PipelineParts) -> Pipeline:
    """Queues and stages for ``cfg``; every queue's drops are reported to the sink (a 'dropped' row)."""
    q = {name: BoundedQueue(name, cfg.queues.size, policy=cfg.queues.policy) for name in STAGE_ORDER}
    # Regions the anomaly model flags and no detection explains are stored as one more class.
    class_names = [*parts.detector.class_names, ANOMALY_CLASS]
    out = cfg.output
    options = EvidenceOptions(
        parts.output_dir,
        out.save_crops,
        out.save_frames,
        out.save_raw,
        out.live_every_s,
        raw_format=out.raw_format,
        crop_format=out.crop_format,
    )
    # one writer: the evidence stage's, or the sink's when it writes its own (evidence_workers: 0)
    writer = EvidenceWriter(options, class_names, default_line=cfg.line)
    sink = _build_sink(cfg, parts, q["sink"], writer)
    anomaly = _build_anomaly_stage(cfg, parts, q)
    for queue in q.values():
        queue.on_drop = sink.on_drop
    source_stage = SourceStage(
        parts.source, q["preprocess"], skip=parts.skip, stop=parts.stop, abort=parts.abort
    )
    evidence = _build_evidence_stage(cfg, parts, q, writer)
    track = _build_track_stage(
        cfg, parts, q, q["evidence"] if evidence is not None else q["sink"], class_names
    )
    return Pipeline(
        source_stage=source_stage,
        stages=[
            *_build_detection_stages(cfg, parts, q),
            anomaly,
            track,
            *([evidence] if evidence is not None else []),
            sink,
        ],
        queues=q,
        track_stage=track,
        anomaly_stage=anomaly,
        sink=sink,
    )


def _build_detection_stages(
    cfg: InspectionConfig, parts: PipelineParts, q: dict[str, BoundedQueue]
) -> list[Stage]:
    """Frames to merged detections: preprocess, tile, batch, detect, merge (in pipeline order)."""
    abort, metrics = parts.abort, parts.metrics
    return [
        PreprocessStage(
            q["preprocess"],
            q["tile"],
            abort=abort,
            metrics=metrics,
            op=build_preprocess(cfg.preprocess),
            identity=not cfg.preprocess.ops,
        ),
        TileStage(
            q["tile"],
            q["batch"],
            abort=abort,
            metrics=metrics,
            tile_hw=cfg.tiling.tile_hw,
            overlap_hw=cfg.tiling.overlap_hw,
        ),
        BatchStage(
            q["batch"],
            q["detect"],
            max_tiles=cfg.detector.batch_tiles,
            wait_ms=cfg.detector.batch_wait_ms,
            abort=abort,
            metrics=metrics,
        ),
        DetectStage(
            q["detect"],
            q["merge"],
            detector=parts.detector,
            workers=cfg.detector.workers,
            abort=abort,
            metrics=metrics,
        ),
        MergeStage(
            q["merge"],
            q["anomaly"],
            abort=abort,
            metrics=metrics,
            method=cfg.tiling.merge,
            iou_threshold=cfg.tiling.merge_iou,
        ),
    ]


def _build_track_stage(
    cfg: InspectionConfig,
    parts: PipelineParts,
    q: dict[str, BoundedQueue],
    outbox: BoundedQueue,
    class_names: list[str],
) -> TrackStage:
    return TrackStage(
        q["track"],
        outbox,
        abort=parts.abort,
        metrics=parts.metrics,
        class_names=class_names,
        enabled=cfg.tracking.enabled,
        tracker_options=TrackerOptions(
            iou_threshold=cfg.tracking.iou_threshold,
            hash_iou_threshold=cfg.tracking.hash_iou_threshold,
            max_hamming=cfg.tracking.max_hamming,
        ),
    )


def _build_anomaly_stage(
    cfg: InspectionConfig, parts: PipelineParts, q: dict[str, BoundedQueue]
) -> AnomalyStage:
    detector = parts.detector
    stage = AnomalyStage(
        q["anomaly"],
        q["track"],
        abort=parts.abort,
        metrics=parts.metrics,
        cfg=cfg.anomaly,
        model_path=resolve_anomaly_model(cfg.anomaly, detector.path),
        tile_hw=cfg.tiling.tile_hw,
        overlap_hw=cfg.tiling.overlap_hw,
        anomaly_class_id=len(detector.class_names),
        class_names=list(detector.class_names),
        detector_manifest=lambda: detector.manifest,
    )
    stage.load()  # build_pipeline runs in the daemon's start(), never in a constructor
    return stage


def _build_evidence_stage(
    cfg: InspectionConfig, parts: PipelineParts, q: dict[str, BoundedQueue], writer: EvidenceWriter
) -> EvidenceStage | None:
    """Evidence files written off the sink's thread (None: ``output.evidence_workers: 0``)."""
    out = cfg.output
    if out.evidence_workers == 0:
        return None
    return EvidenceStage(
        q["evidence"],
        q["sink"],
        abort=parts.abort,
        metrics=parts.metrics,
        writer=writer,
        workers=out.evidence_workers,
        nice=out.evidence_nice,
    )


def _build_sink(
    cfg: InspectionConfig, parts: PipelineParts, inbox: BoundedQueue, evidence: EvidenceWriter
) -> SinkStage:
    return SinkStage(
        inbox,
        abort=parts.abort,
        metrics=parts.metrics,
        writer=parts.writer,
        evidence=evidence,
        geometry=Geometry(cfg.mm_per_line, cfg.mm_per_px),
        line=cfg.line,
        coil=cfg.coil,
        alarm=_build_alarms(cfg, parts),
        coil_gap_s=cfg.coils.close_after_gap_s,
        coil_grading=cfg.grading,
        surface=cfg.surface,
    )


def _build_alarms(cfg: InspectionConfig, parts: PipelineParts) -> AlarmDispatcher | None:
    if not cfg.alarms:
        return None
    return AlarmDispatcher(
        cfg.alarms,
        repository_writer=parts.writer,
        class_names=parts.detector.class_names,
        metrics=parts.metrics,
        operating_point=parts.detector.operating_point,
    )
