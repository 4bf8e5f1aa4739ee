"""The one typed training config (saved inside every checkpoint and model bundle)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from datasets.augment import AugmentConfig
from datasets.model import NEU_DET_CLASSES
from datasets.settings import StrictModel
from training.models.faster_rcnn import FasterRCNNConfig
from training.models.yolo.model import YoloConfig
from training.optim import OptimizerConfig, ScheduleConfig


class ModelConfig(StrictModel):
    family: Literal["yolo", "faster_rcnn"] = "yolo"
    image_size: int = Field(224, ge=32, le=2048)
    in_channels: Literal[1, 3] = 1
    yolo: YoloConfig = YoloConfig()
    faster_rcnn: FasterRCNNConfig = FasterRCNNConfig()


class BackgroundConfig(StrictModel):
    """Clean tiles (``steel data background``) added to training as zero-box images."""

    path: str | None = None  # folder with background.json; None: no background
    share: float = Field(0.0, ge=0, lt=1)  # share of the training set that is clean tiles
    seed: int = 0
    check_bundle: str | None = None  # drop tiles where this model finds a box at >= check_score
    check_score: float = Field(0.5, gt=0, lt=1)


class DataConfig(StrictModel):
    path: str | None = None  # annotations; None: $STEEL_DATA/annotations
    format: Literal["auto", "voc", "vott-json", "vott-project", "vott-csv", "coco"] = "auto"
    images: str | None = None
    split_file: str | None = None  # an existing split to train on (verified by content hash)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    classes: list[str] = Field(default_factory=lambda: list(NEU_DET_CLASSES), min_length=1)
    augment: AugmentConfig = AugmentConfig()
    subset: int | None = Field(None, ge=1)  # first N training images (smoke tests)
    background: BackgroundConfig = BackgroundConfig()


class DistillConfig(StrictModel):
    """``train.distill``: teacher bundles (YOLO on the student's anchor grid) and each soft term's weight."""

    teachers: list[str] = Field(default_factory=list)  # model bundle folders; empty: no distillation
    cls_gain: float = Field(0.5, ge=0)  # Bernoulli KL of the class probabilities over all anchors
    dfl_gain: float = Field(1.5, ge=0)  # KL of the distance distributions, weighted by teacher confidence
    # images without any box (clean tiles): "teacher" distils the teacher's probabilities there too;
    # "labels" keeps the labels' word (no defect anywhere): for a teacher never trained on clean steel
    clean_images: Literal["teacher", "labels"] = "teacher"


class EMAConfig(StrictModel):
    enabled: bool = True
    decay: float = Field(0.9999, gt=0, lt=1)
    tau: float = Field(2000.0, gt=0)


class TrainSettings(StrictModel):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(16, ge=1)  # global batch (split across DDP ranks)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    ema: EMAConfig = EMAConfig()
    distill: DistillConfig = DistillConfig()
    grad_clip: float | None = Field(10.0, gt=0)
    # BatchNorm normalises with its running statistics and never updates them (fine-tuning with tiny
    # batches; on CPU DDP, where SyncBatchNorm is unavailable, ranks then match one process exactly).
    freeze_bn_stats: bool = False
    amp: bool = True  # CUDA only: fp16 autocast with a gradient scaler
    # CPU only: bf16 autocast (with channels_last) halves the CPU time of a YOLO-n step where the CPU has
    # native bf16 (AVX512-BF16 / AMX; README "Training at scale"); fp32 keeps earlier runs' numbers.
    cpu_precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = True  # CUDA, and CPU with bf16
    patience: int | None = Field(40, ge=1)  # epochs without val mAP@0.5 gain before stopping
    seed: int = 0
    deterministic: bool = False
    eval_every: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after N optimizer steps (tests)
    workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out_dir: str = "runs/train"


class EvalSettings(StrictModel):
    conf_threshold: float = Field(0.25, gt=0, lt=1)
    iou_threshold: float = Field(0.5, gt=0, lt=1)
    batch_size: int = Field(32, ge=1)


class TrainConfig(StrictModel):
    name: str = Field("model", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainSettings = TrainSettings()
    eval: EvalSettings = EvalSettings()

    @model_validator(mode="after")
    def _unique_classes(self) -> TrainConfig:
        if len(set(self.data.classes)) != len(self.data.classes):
            raise ValueError(f"data.classes: {self.data.classes} has a repeated name")
        if self.train.distill.teachers and self.model.family != "yolo":
            family = self.model.family
            raise ValueError(f"train.distill.teachers: distillation needs model.family yolo, not {family}")
        return self
