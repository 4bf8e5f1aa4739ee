"""The retraining job's configuration (``configs/retrain.yaml``), validated before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from datasets.settings import REPO_ROOT, StrictModel, load_config


def project_file(path: str | None) -> str | None:
    """A project file named relative to the checkout (split files, recipes) found from any working folder:
    as given when it exists from here, else under the repository root."""
    if path is None or Path(path).is_absolute() or Path(path).exists():
        return path
    candidate = REPO_ROOT / path
    return str(candidate) if candidate.exists() else path


AnnotationFormat = Literal["auto", "voc", "vott-json", "vott-project", "vott-csv", "coco"]


class DataSourceConfig(StrictModel):
    """A labelled image set: annotations in any supported format, optionally one side of a split file."""

    path: str | None = None  # annotations; None: $STEEL_DATA/annotations
    format: AnnotationFormat = "auto"
    images: str | None = None  # image folder searched first
    split_file: str | None = "configs/splits/neu-det-dev.json"  # verified by content hash
    side: Literal["train", "val", "all"] = "train"  # "all": every image, no split file needed
    max_images: int | None = Field(None, ge=1)  # a seeded sample (a replay budget, or smoke tests)
    seed: int = 0

    @field_validator("split_file")
    @classmethod
    def _split_file_found(cls, value: str | None) -> str | None:
        return project_file(value)

    @model_validator(mode="after")
    def _side_needs_split(self) -> DataSourceConfig:
        if self.side != "all" and not self.split_file:
            raise ValueError(f"side {self.side!r} needs a split_file (or side: all)")
        return self


class CollectConfig(StrictModel):
    """How reviewed detections become training images."""

    # The daemon's output.dir: its sink keeps each frame with defects as raw/<source>/<seq>.tiff (or .png).
    frames_dir: str = "var/inspection"
    window_px: int = Field(200, ge=32)  # windows cut around each reviewed defect: the daemon's tile size
    min_visibility: float = Field(0.3, gt=0, le=1)  # share of a box inside a window for it to be a label
    # A window that shows a defect nobody reviewed: skip it, or label that defect as the model predicted.
    unreviewed: Literal["skip", "predicted"] = "skip"
    val_fraction: float = Field(0.3, gt=0, lt=1)  # the new data's validation part (a gate of the decision)
    seed: int = 0
    min_reviews: int = Field(20, ge=1)  # fewer new reviews than this: no run (nothing worth training on)
    min_images: int = Field(10, ge=1)  # fewer usable images than this: the run fails, reviews stay unused


class ReplayConfig(StrictModel):
    """Old data mixed into the challenger's training so it does not forget old classes."""

    # Snapshots of earlier runs join the training data: those of promoted runs (unless a person dropped
    # them: steel models snapshot drop) and of rejected runs a person accepted (steel models snapshot accept).
    previous_snapshots: bool = True


class CalibrationConfig(StrictModel):
    """The challenger's per-class operating point, chosen before it is judged, never on the fixed set."""

    target_recall: float = Field(0.9, gt=0, le=1)  # per class, on the calibration images
    # A seeded sample of the base side held out of the challenger's training to calibrate on.
    holdout_images: int = Field(60, ge=1)
    seed: int = 0


class RetentionConfig(StrictModel):
    """What finished runs leave on disk (the database keeps every row)."""

    keep_rejected_bundles: int = Field(3, ge=0)  # newest rejected challengers kept in the registry
    # newest runs/run-<id>/ folders (training data links, checkpoints), and failed runs' snapshots
    keep_run_dirs: int = Field(5, ge=0)


class RecipeConfig(StrictModel):
    path: str = "configs/train/yolo_n.yaml"  # a training config (steel train)
    overrides: list[str] = Field(default_factory=list)  # key.path=value, as `steel train --set`

    @field_validator("path")
    @classmethod
    def _recipe_found(cls, value: str) -> str:
        return project_file(value) or value


class GatesConfig(StrictModel):
    """The promotion rule's tolerances (see :mod:`inspection.retrain.decide`)."""

    max_map50_drop: float = Field(0.01, ge=0, le=1)  # on the fixed set, absolute mAP@0.5
    max_class_ap50_drop: float = Field(0.05, ge=0, le=1)  # any one class's AP50 on the fixed set
    require_better_on_new: bool = True  # on the new data's validation part
    # On the new data, the challenger's mAP@0.5 must exceed the champion's by more than this.
    min_new_gain: float = Field(0.0, ge=0, le=1)
    # Fewer boxes than this of a class in the new data's validation part: that comparison is not significant.
    min_new_boxes_per_class: int = Field(10, ge=1)
    # At each model's per-class operating point on the fixed set: reject recall may fall by at most this...
    max_reject_recall_drop: float = Field(0.05, ge=0, le=1)
    # ... and false rejects (detections over no defect) may rise by at most this many per image.
    max_false_reject_rise: float = Field(0.05, ge=0)


class OutputConfig(StrictModel):
    work_dir: str = "var/retrain"  # snapshots/run-<id>/ (datasets) and runs/run-<id>/ (training, reports)
    registry_dir: str = "models/registry"  # challenger bundles: <registry_dir>/<version>/
    version_prefix: str = Field("retrain", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # <prefix>-r<run id>


def check_database_url(url: str) -> str:
    """``url`` when SQLAlchemy can parse it; else a ValueError quoting it (not an ArgumentError traceback)."""
    try:
        make_url(url)
    except ArgumentError:
        raise ValueError(f"not a SQLAlchemy database URL: {url!r}") from None
    return url


class RetrainConfig(StrictModel):
    db: str = "sqlite:///var/inspection.db"
    base: DataSourceConfig = DataSourceConfig(side="train")
    fixed_set: DataSourceConfig = DataSourceConfig(side="val")  # never trained on
    collect: CollectConfig = CollectConfig()
    replay: ReplayConfig = ReplayConfig()
    recipe: RecipeConfig = RecipeConfig()
    from_champion: bool = True  # fine-tune the active model; False: train the recipe from scratch
    champion_fallback: str | None = "models/neu-yolo-n"  # the champion when the database has none active
    nproc: int = Field(0, ge=0)  # torchrun processes for training; 0 = in this process
    gates: GatesConfig = GatesConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    retention: RetentionConfig = RetentionConfig()
    output: OutputConfig = OutputConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("db")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return check_database_url(value)

    @model_validator(mode="after")
    def _fixed_set_is_held_out(self) -> RetrainConfig:
        same_source = (self.base.path, self.base.split_file) == (
            self.fixed_set.path,
            self.fixed_set.split_file,
        )
        overlap = "all" in (self.base.side, self.fixed_set.side) or self.base.side == self.fixed_set.side
        if same_source and overlap:
            raise ValueError(
                f"fixed_set (side {self.fixed_set.side!r}) overlaps base (side {self.base.side!r}) "
                "of the same data: the fixed set must never be trained on"
            )
        return self


def load_retrain_config(path: str | Path, overrides: list[str] | None = None) -> RetrainConfig:
    """Read ``configs/retrain.yaml`` (``key.path=value`` overrides applied first); ConfigError if invalid."""
    return load_config(path, RetrainConfig, overrides or [])
