"""The daemon's configuration (``configs/inspection.yaml``), validated before any work starts.

Validation here is pure (no file system, no network): every number finite and in range, names non-empty,
the source URI and the database URL well formed. What needs the machine (a folder that exists, a model
bundle, writable folders) is checked by :mod:`inspection.preflight`, which ``--validate-config`` and the
daemon's start both run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from datasets.settings import StrictModel
from inspection import constants as C
from inspection.alarms.config import AlarmsConfig
from inspection.preprocess import PreprocessConfig
from inspection.stages.anomaly import AnomalyStageConfig
from inspection.storage.grading import GradingRules

SOURCE_SCHEMES = ("folder", "video", "camera", "strip-sim", "genicam")  # as inspection.sources.SCHEMES
DB_BACKENDS = ("sqlite", "postgresql")


class Section(StrictModel):
    """A daemon config section: strict, and no infinite or NaN numbers (``.inf`` parses as YAML)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TilingConfig(Section):
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


class DetectorConfig(Section):
    model: str = "models/neu-yolo-n"  # a bundle folder
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, le=1024)  # CPU intra-op threads per model call
    # batches scored at once by one model; with threads unset each call gets cores / workers threads
    workers: int = Field(2, ge=1, le=16)
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"  # auto: onnxruntime for YOLO when installed
    int8: bool = False  # onnxruntime's int8 export (made by `steel export --int8`)
    batch_tiles: int = Field(32, ge=1, le=4096)  # tiles per model batch (across frames)
    batch_wait_ms: float = Field(5.0, ge=0, le=10_000)  # wait this long to fill a batch
    score_threshold: float | None = Field(None, ge=0, lt=1)  # None: the bundle's
    watch_db_promotions_s: float | None = Field(
        10.0, gt=0, le=86_400
    )  # poll the active model; None: SIGHUP only


class TrackingConfig(Section):
    enabled: bool = True
    iou_threshold: float = Field(0.5, gt=0, le=1)  # same defect when IoU in strip coords is at least this
    hash_iou_threshold: float = Field(0.2, ge=0, le=1)  # ...or at least this and the crops' dHash agree
    max_hamming: int = Field(10, ge=0, le=64)


class QueueConfig(Section):
    size: int = Field(8, ge=1, le=100_000)
    policy: Literal["block", "drop_oldest"] = "block"


class OutputConfig(Section):
    dir: str = "var/inspection"  # crops, annotated frames, spool
    save_crops: bool = True
    save_frames: Literal["none", "defects", "all"] = "defects"
    save_raw: bool = (
        True  # lossless raw pixels beside each saved frame: retraining cuts its windows from them
    )
    raw_format: Literal["tiff", "png"] = "tiff"  # tiff: uncompressed, ~70x less CPU; png: ~25 % less disk
    crop_format: Literal["jpg", "png"] = "jpg"  # defect crops are for people: jpg costs a third of png
    live_every_s: float = Field(
        1.0, ge=0, le=86_400
    )  # refresh the annotated latest frame per line at most this often
    # database and spool both full (one full disk): hold this many records in memory, then stop the line
    hold_max_records: int = Field(1000, ge=1, le=1_000_000)
    # evidence files are encoded by this many threads beside the sink (0: the sink writes them itself)
    evidence_workers: int = Field(2, ge=0, le=32)
    # ... at this much lower OS priority than the model (Linux), so a busy CPU serves the detector first
    evidence_nice: int = Field(10, ge=0, le=19)


class FolderConfig(Section):
    """How a ``folder:`` source treats files a camera is still writing and hostile files."""

    settle_s: float = Field(1.0, ge=0, le=600)  # unmodified this long before a file is read
    decode_attempts: int = Field(3, ge=1, le=100)  # an empty/truncated/undecodable file is read this often
    max_pixels: int = Field(50_000_000, ge=1, le=150_000_000)  # refused from the header, never decoded


class CoilsConfig(Section):
    """When the daemon closes a coil (besides the source moving to the next coil, and shutdown)."""

    close_after_gap_s: float | None = Field(600.0, gt=0, le=7 * 86_400)  # no frame this long: coil ended


class HealthConfig(Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)
    stage_budget_s: float = Field(
        30.0, gt=0, le=86_400
    )  # a stage silent this long (with work queued) is unhealthy


class InspectionConfig(Section):
    source: str = "strip-sim:across=4,along=12,frame_lines=600,overlap_lines=200"
    line: str = Field("line-1", min_length=1, max_length=200)
    coil: str | None = Field(None, min_length=1, max_length=200)  # None: the source's coil
    surface: Literal["top", "bottom"] | None = (
        None  # the strip surface the camera sees, if its source doesn't say
    )
    db: str = "sqlite:///var/inspection.db"
    mm_per_line: float = Field(C.DEFAULT_MM_PER_LINE, gt=0, le=1000)  # along the strip
    mm_per_px: float = Field(C.DEFAULT_MM_PER_LINE, gt=0, le=1000)  # across the strip
    preprocess: PreprocessConfig = PreprocessConfig()
    tiling: TilingConfig = TilingConfig()
    detector: DetectorConfig = DetectorConfig()
    anomaly: AnomalyStageConfig = AnomalyStageConfig()  # unknown defects (issue 13)
    tracking: TrackingConfig = TrackingConfig()
    queues: QueueConfig = QueueConfig()
    output: OutputConfig = OutputConfig()
    folder: FolderConfig = FolderConfig()
    coils: CoilsConfig = CoilsConfig()
    grading: GradingRules = Field(
        default_factory=GradingRules
    )  # each closed coil's grade (dashboard shows it)
    health: HealthConfig = HealthConfig()
    alarms: AlarmsConfig | None = None  # reject rule and sinks (log, webhook, modbus PLC); None: no signals

    @field_validator("line", "coil")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("source")
    @classmethod
    def _source_uri(cls, value: str) -> str:
        scheme, sep, rest = value.partition(":")
        if not sep or scheme.lower() not in SOURCE_SCHEMES:
            raise ValueError(f"{value!r}: expected one of {', '.join(s + ':...' for s in SOURCE_SCHEMES)}")
        if not rest.strip() and scheme.lower() != "strip-sim":
            raise ValueError(f"{value!r}: nothing after {scheme + ':'!r}")
        return value

    @field_validator("db")
    @classmethod
    def _db_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                f"{value!r} is not a database URL (sqlite:///PATH or postgresql+psycopg://...)"
            ) from None
        if url.get_backend_name() not in DB_BACKENDS:
            raise ValueError(f"{value!r}: backend {url.get_backend_name()!r}, expected sqlite or postgresql")
        if url.get_backend_name() == "postgresql" and not url.database:
            raise ValueError(f"{value!r}: no database name")
        return value

    @field_validator("preprocess", "alarms", "grading")
    @classmethod
    def _every_number_finite(cls, value: Any) -> Any:
        """Sections defined elsewhere (alarms, preprocess) get the same rule as this module's."""
        if value is not None:
            for path, number in _numbers(value.model_dump(), ""):
                if not math.isfinite(number):
                    raise ValueError(f"{path}: {number} is not a finite number")
        return value


def _numbers(value: Any, path: str) -> Iterator[tuple[str, float]]:
    if isinstance(value, float):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")
