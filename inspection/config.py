"""The daemon's configuration (``configs/inspection.yaml``), validated before any work starts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from datasets.settings import StrictModel
from inspection import constants as C
from inspection.alarms.config import AlarmsConfig
from inspection.preprocess import PreprocessConfig
from inspection.stages.anomaly import AnomalyStageConfig


class TilingConfig(StrictModel):
    tile_hw: tuple[int, int] = C.DEFAULT_TILE_HW
    overlap_hw: tuple[int, int] = C.DEFAULT_TILE_OVERLAP_HW
    merge: Literal["nms", "wbf"] = "nms"
    merge_iou: float = Field(C.DEFAULT_MERGE_IOU, gt=0, le=1)

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> TilingConfig:
        for axis, (tile, overlap) in enumerate(zip(self.tile_hw, self.overlap_hw, strict=True)):
            if tile <= 0 or overlap < 0 or overlap >= tile:
                raise ValueError(f"tiling.overlap_hw[{axis}]: {overlap} must be >= 0 and < tile {tile}")
        return self


class DetectorConfig(StrictModel):
    model: str = "models/neu-yolo-n"  # a bundle folder
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1)  # CPU intra-op threads
    batch_tiles: int = Field(32, ge=1)  # tiles per model batch (across frames)
    batch_wait_ms: float = Field(5.0, ge=0)  # wait this long to fill a batch
    score_threshold: float | None = Field(None, ge=0, lt=1)  # None: the bundle's
    watch_db_promotions_s: float | None = Field(10.0, gt=0)  # poll the active model; None: SIGHUP only


class TrackingConfig(StrictModel):
    enabled: bool = True
    iou_threshold: float = Field(0.5, gt=0, le=1)  # same defect when IoU in strip coords is at least this
    hash_iou_threshold: float = Field(0.2, ge=0, le=1)  # ...or at least this and the crops' dHash agree
    max_hamming: int = Field(10, ge=0, le=64)


class QueueConfig(StrictModel):
    size: int = Field(8, ge=1)
    policy: Literal["block", "drop_oldest"] = "block"


class OutputConfig(StrictModel):
    dir: str = "var/inspection"  # crops, annotated frames, spool
    save_crops: bool = True
    save_frames: Literal["none", "defects", "all"] = "defects"
    save_raw: bool = (
        True  # lossless raw pixels beside each saved frame: retraining cuts its windows from them
    )
    live_every_s: float = Field(1.0, ge=0)  # refresh the annotated latest frame per line at most this often


class HealthConfig(StrictModel):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)
    stage_budget_s: float = Field(30.0, gt=0)  # a stage silent this long (with work queued) is unhealthy


class InspectionConfig(StrictModel):
    source: str = "strip-sim:across=4,along=12,frame_lines=600,overlap_lines=200"
    line: str = "line-1"
    coil: str | None = None  # None: the source's coil, else one per daemon start
    db: str = "sqlite:///var/inspection.db"
    mm_per_line: float = Field(C.DEFAULT_MM_PER_LINE, gt=0)  # along the strip
    mm_per_px: float = Field(C.DEFAULT_MM_PER_LINE, gt=0)  # across the strip
    preprocess: PreprocessConfig = PreprocessConfig()
    tiling: TilingConfig = TilingConfig()
    detector: DetectorConfig = DetectorConfig()
    anomaly: AnomalyStageConfig = AnomalyStageConfig()  # unknown defects (issue 13)
    tracking: TrackingConfig = TrackingConfig()
    queues: QueueConfig = QueueConfig()
    output: OutputConfig = OutputConfig()
    health: HealthConfig = HealthConfig()
    alarms: AlarmsConfig | None = None  # reject rule and sinks (log, webhook, modbus PLC); None: no signals
