"""The trainer on tiny subsets of NEU-DET: what a run writes, exact resume, divergence, early stopping,
config errors, the learning-rate schedule, weight-decay groups, EMA and frozen BatchNorm statistics."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from datasets.settings import REPO_ROOT, ConfigError, load_config
from datasets.torch_dataset import DetectionDataset
from training import trainer
from training.bundle import load_bundle
from training.config import TrainConfig
from training.ema import ModelEMA
from training.fit_setup import build_run
from training.models.yolo.model import YoloConfig, build_yolo
from training.optim import OptimizerConfig, ScheduleConfig, build_optimizer, build_scheduler, lr_factor
from training.trainer import NonFiniteLossError, fit, train_one_epoch, validation_loss

from .neu_samples import load_neu_batch

CONFIG = REPO_ROOT / "configs" / "train" / "yolo_n.yaml"


@pytest.fixture(autouse=True)
def _restore_global_torch_state():
    """``fit`` sets the thread count and deterministic mode process-wide; put them back."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def tiny(out_dir: Path, *extra: str) -> TrainConfig:
    """The shipped recipe cut down to 16 training images at 64 px, 2 steps per epoch."""
    return load_config(
        CONFIG,
        TrainConfig,
        [
            "data.subset=16",
            "train.epochs=1",
            "train.max_steps=2",
            "train.batch_size=4",
            "train.eval_every=1",
            "train.threads=1",
            "model.image_size=64",
            f"train.out_dir={out_dir}",
            *extra,
        ],
    )


def one_cpu_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: list,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """``train_one_epoch`` over one batch on the CPU with the shipped optimizer and schedule."""
    optimizer = build_optimizer(OptimizerConfig(), model)
    scheduler = build_scheduler(optimizer, total_steps=10, warmup_steps=0, cfg=ScheduleConfig())
    return train_one_epoch(
        model, [(images, targets)], optimizer=optimizer, scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=False), device=torch.device("cpu"),
        amp_dtype=amp_dtype, channels_last=channels_last,
    )  # fmt: skip


def checkpoint(path: Path) -> dict:
    return torch.load(path / "last.pt", map_location="cpu", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- a run's outputs ---------------------------------------------------------------------------------


def test_fit_writes_checkpoint_logs_plot_split_and_bundle(neu_root: Path, tmp_path: Path):
    result = fit(tiny(tmp_path, "train.epochs=2", "data.split_file=null"))
    assert result.out_dir == tmp_path and result.epochs_run == 2
    assert result.bundle_dir == tmp_path / "bundle"

    state = checkpoint(tmp_path)
    assert state["epoch"] == 1 and state["ema"] is not None
    for key in ("model", "optimizer", "scheduler", "rng", "config", "history"):
        assert key in state

    history = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(math.isfinite(row["train_loss"]) and "map50" in row and "val_loss" in row for row in history)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "epoch" and {"train_loss", "val_loss", "map50", "map50_95", "lr"} <= set(header)
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    split = json.loads((tmp_path / "split.json").read_text())
    assert split["train"] and split["val"]
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert (tmp_path / "bundle" / manifest["weights"]["file"]).is_file()
    assert manifest["split"]["sha256"] == split["split_sha256"]
    assert manifest["architecture"]["image_size"] == 64
    assert manifest["metrics"]["map50"] == pytest.approx(result.best_map50)


# --- exact resume ------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


CLOSE_LAST = (
    "data.augment.mosaic_p=1.0",
    "data.augment.copy_paste_p=1.0",
    "data.augment.close_mosaic_epochs=1",
)


@pytest.mark.parametrize(
    ("precision", "augment"),
    [("fp32", ()), ("bf16", ()), ("fp32", CLOSE_LAST)],
    ids=["fp32", "bf16", "mosaic-closed-after-the-resume"],
)
def test_resume_continues_exactly(
    precision: str, augment: tuple[str, ...], neu_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Augmentation and EMA stay on: resume must restore the sampler order, augmentation draws and EMA.
    settings = ("train.epochs=2", "train.deterministic=true", "train.workers=0", "train.seed=3",
                f"train.cpu_precision={precision}", *augment)  # fmt: skip
    fit(tiny(tmp_path / "straight", *settings))

    real_save = trainer.save_checkpoint

    def save_then_crash(path, **kwargs):
        real_save(path, **kwargs)
        raise Interrupted  # the process dies right after the epoch-1 checkpoint

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(Interrupted):
        fit(tiny(tmp_path / "resumed", *settings))
    assert checkpoint(tmp_path / "resumed")["epoch"] == 0
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    result = fit(tiny(tmp_path / "resumed", *settings), resume=True)
    assert result.epochs_run == 2

    straight, resumed = checkpoint(tmp_path / "straight"), checkpoint(tmp_path / "resumed")
    assert resumed["epoch"] == 1
    assert_same_tensors(straight["model"], resumed["model"])
    assert_same_tensors(straight["ema"]["module"], resumed["ema"]["module"])
    assert straight["optimizer"]["state"].keys() == resumed["optimizer"]["state"].keys()
    for key, value in straight["optimizer"]["state"].items():
        assert_same_tensors(value, resumed["optimizer"]["state"][key])
    assert straight["scheduler"]["last_epoch"] == resumed["scheduler"]["last_epoch"] == 4
    drop = ("train_seconds",)
    assert [{k: v for k, v in row.items() if k not in drop} for row in straight["history"]] == [
        {k: v for k, v in row.items() if k not in drop} for row in resumed["history"]
    ]


@pytest.mark.parametrize("workers", [0, 1])
def test_mosaic_and_copy_paste_stop_for_the_last_epochs(
    workers: int, neu_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    switches: list[tuple[int, bool]] = []
    real_switch, real_fresh = DetectionDataset.set_composites, trainer.fresh_train_loader
    fresh: list[int] = []

    def spy_switch(ds: DetectionDataset, on: bool) -> None:
        switches.append((len(fresh), on))
        real_switch(ds, on)

    def spy_fresh(run):
        fresh.append(1)
        return real_fresh(run)

    monkeypatch.setattr(DetectionDataset, "set_composites", spy_switch)
    monkeypatch.setattr(trainer, "fresh_train_loader", spy_fresh)
    seen: list[bool] = []
    real_epoch = trainer.train_one_epoch

    def spy_epoch(model, loader, **kwargs):
        seen.append(loader.dataset.composites)
        return real_epoch(model, loader, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", spy_epoch)
    fit(tiny(tmp_path, "train.epochs=3", "train.eval_every=3", f"train.workers={workers}", *CLOSE_LAST))
    assert seen == [True, True, False]  # the last epoch trains on whole images
    assert switches == [(0, False)]
    assert len(fresh) == workers  # persistent workers hold the old data set: they are started again


def test_resume_without_a_checkpoint_is_a_clear_error(neu_root: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(tiny(tmp_path), resume=True)


# --- bf16 on the CPU ----------------------------------------------------------------------------------


def test_a_bf16_cpu_step_runs_the_convolutions_in_bf16_and_keeps_float32_weights(neu_root: Path):
    torch.manual_seed(0)
    model = build_yolo(YoloConfig(), num_classes=6, in_channels=1, image_size=64)
    model = model.to(memory_format=torch.channels_last)
    images, targets = load_neu_batch(["crazing_1", "scratches_10"], size=64)
    seen: list[torch.dtype] = []
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    before = first_conv.weight.detach().clone()
    losses = one_cpu_step(model, images, targets, amp_dtype=torch.bfloat16, channels_last=True)
    assert seen == [torch.bfloat16] and math.isfinite(losses["loss"])
    assert first_conv.weight.dtype == torch.float32 and not torch.equal(first_conv.weight, before)


def test_a_bf16_cpu_run_ships_a_float32_bundle_that_loads(neu_root: Path, tmp_path: Path):
    result = fit(tiny(tmp_path, "train.cpu_precision=bf16"))
    assert result.bundle_dir is not None
    bundle = load_bundle(result.bundle_dir, device="cpu")
    params = list(bundle.model.parameters())
    assert params and all(p.dtype == torch.float32 for p in params)
    run = build_run(tiny(tmp_path / "again", "train.cpu_precision=bf16"))
    assert run.amp_dtype == torch.bfloat16 and run.channels_last
    assert not run.scaler.is_enabled()


def test_fp32_cpu_runs_stay_as_they_were(neu_root: Path, tmp_path: Path):
    run = build_run(tiny(tmp_path))
    assert run.amp_dtype is None and not run.channels_last


# --- divergence and early stopping -------------------------------------------------------------------


def test_non_finite_loss_stops_before_the_weights_are_touched():
    torch.manual_seed(0)
    model = build_yolo(YoloConfig(), num_classes=6, in_channels=1, image_size=64)
    images = torch.rand(2, 1, 64, 64)
    images[0, 0, 10, 10] = float("nan")
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}] * 2
    before = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 0"):
        one_cpu_step(model, images, targets)
    weights = {k: v for k, v in model.state_dict().items() if k in before and "running" not in k}
    assert all(torch.equal(v, before[k]) for k, v in weights.items())


def test_early_stopping_after_patience_evaluations_without_gain(
    neu_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    scripted = [0.10, 0.30, 0.20, 0.25, 0.90, 0.95]  # best at epoch 2, then two epochs without gain
    real_evaluate = trainer.evaluate_model

    def scripted_evaluate(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        return dataclasses.replace(result, map50=scripted.pop(0)) if scripted else result

    monkeypatch.setattr(trainer, "evaluate_model", scripted_evaluate)
    result = fit(tiny(tmp_path, "train.epochs=6", "train.max_steps=1", "train.patience=2"))
    assert result.epochs_run == 4
    assert result.best_map50 == pytest.approx(0.30)
    assert [row["map50"] for row in result.history] == pytest.approx([0.10, 0.30, 0.20, 0.25])
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["version"].endswith("-e2")  # the bundle is the best epoch's, not the last
    assert manifest["metrics"]["epoch"] == 2


# --- config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.optimizer.lr=-0.1", "train.optimizer.lr: -0.1 is not > 0"),
        ("train.optimiser.lr=0.1", "train.optimiser: unknown key"),
        ("model.in_channels=2", "model.in_channels"),
        ("data.classes=[a, a]", "repeated name"),
    ],
)
def test_config_errors_name_the_key_path(override: str, message: str):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(CONFIG, TrainConfig, [override])


def test_shipped_recipe_is_valid():
    cfg = load_config(CONFIG, TrainConfig)
    assert cfg.model.family == "yolo" and cfg.model.image_size % 32 == 0
    assert cfg.data.split_file and (REPO_ROOT / cfg.data.split_file).is_file()


# --- schedule, optimizer groups, EMA, BatchNorm ------------------------------------------------------

SCHEDULE = ScheduleConfig(warmup_epochs=1, warmup_start_ratio=0.1, min_lr_ratio=0.05)


@pytest.mark.parametrize(
    ("step", "factor"),
    [
        (0, 0.1),  # warmup starts at warmup_start_ratio
        (1, 0.55),  # linear halfway
        (2, 1.0),  # cosine starts at the peak
        (4, 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi / 4))),
        (6, 0.525),  # cosine halfway: (1 + min) / 2
        (10, 0.05),  # the end: min_lr_ratio
        (12, 0.05),  # past the end: stays there
    ],
)
def test_lr_factor_warmup_then_cosine(step: int, factor: float):
    assert lr_factor(step, total_steps=10, warmup_steps=2, cfg=SCHEDULE) == pytest.approx(factor)


def test_scheduler_drives_the_optimizer_lr():
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(OptimizerConfig(name="sgd", lr=0.01), model)
    scheduler = build_scheduler(optimizer, total_steps=10, warmup_steps=2, cfg=SCHEDULE)
    seen = []
    for _ in range(11):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.01 * lr_factor(s, total_steps=10, warmup_steps=2, cfg=SCHEDULE) for s in range(11)]
    assert seen == pytest.approx(expected)
    assert seen[2] == pytest.approx(0.01) and seen[10] == pytest.approx(0.0005)


def test_weight_decay_skips_norms_and_biases():
    model = build_yolo(YoloConfig(), num_classes=6, in_channels=1, image_size=64)
    optimizer = build_optimizer(OptimizerConfig(weight_decay=0.05), model)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 4 for p in decay["params"])  # conv kernels only
    bn = model.backbone.stem.bn
    ids = {id(p) for p in no_decay["params"]}
    assert id(bn.weight) in ids and id(bn.bias) in ids
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_ema_follows_the_ramped_decay():
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 1.0)
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1))
    assert float(ema.module.weight) == pytest.approx(d * 1.0 + (1 - d) * 3.0)
    assert not ema.module.weight.requires_grad


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_validation_loss_and_frozen_bn_leave_running_statistics_alone():
    torch.manual_seed(0)
    model = build_yolo(YoloConfig(), num_classes=6, in_channels=1, image_size=64)
    images = torch.rand(2, 1, 64, 64)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}] * 2
    stats = _bn_buffers(model)

    value = validation_loss(model, [(images, targets)], device=torch.device("cpu"))
    assert math.isfinite(value) and value > 0
    assert not model.training
    assert_same_tensors(stats, _bn_buffers(model))

    optimizer = build_optimizer(OptimizerConfig(), model)
    scheduler = build_scheduler(optimizer, total_steps=10, warmup_steps=0, cfg=ScheduleConfig())
    conv = model.backbone.stem.conv.weight.detach().clone()
    step = {
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": torch.amp.GradScaler("cuda", enabled=False),
        "device": torch.device("cpu"),
    }
    train_one_epoch(model, [(images, targets)], freeze_bn_stats=True, **step)
    assert_same_tensors(stats, _bn_buffers(model))
    assert not torch.equal(conv, model.backbone.stem.conv.weight)  # the weights did train

    train_one_epoch(model, [(images, targets)], **step)
    assert not torch.equal(stats["backbone.stem.bn.running_mean"], model.backbone.stem.bn.running_mean)
