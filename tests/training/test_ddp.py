"""Data-parallel training: ``torchrun --nproc_per_node=2`` (gloo on CPU) runs the real trainer; the ranks
end with identical weights that match one process trained on the same global batch, and only rank 0
writes anything.

What makes the equivalence exact rather than approximate, so the test can use a float tolerance:

* BatchNorm: each rank would normalise with the statistics of its own half of the batch (one process
  uses the whole batch), and SyncBatchNorm needs CUDA. The run sets ``train.freeze_bn_stats`` so BN uses
  its running statistics in both runs. (On CUDA the trainer converts to SyncBatchNorm instead.)
* The YOLO loss divides by the batch's total target score; under DDP every rank divides by the global
  total / world size (``loss_normaliser``), so the averaged gradient is the whole batch's gradient.
  Without that, the weights here differ by ~1e-2 after six steps instead of ~1e-9.
* No augmentation, no EMA, no gradient clipping, SGD: the only differences left are summation order.
  ``DistributedSampler`` and the single process's seeded ``RandomSampler`` draw the same permutation,
  so step k of both runs sees the same global batch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from datasets.settings import REPO_ROOT

WORKER = Path(__file__).with_name("ddp_worker.py")
CONFIG = REPO_ROOT / "configs" / "train" / "yolo_n.yaml"
PER_CLASS = 3  # 18 images: 13-14 train, 4-5 val

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo needed"
    ),
]


def overrides(annotations: Path, images: Path) -> list[str]:
    return [
        f"data.path={annotations}",
        f"data.images={images}",
        "data.split_file=null",
        "data.val_fraction=0.25",
        "data.augment.enabled=false",
        "model.image_size=64",
        "train.epochs=2",  # 3 steps per epoch, so the sampler's per-epoch reshuffle is exercised
        "train.batch_size=4",  # global: 2 per rank under torchrun
        "train.ema.enabled=false",
        "train.grad_clip=null",
        "train.freeze_bn_stats=true",
        "train.optimizer.name=sgd",
        "train.optimizer.lr=0.01",
        "train.optimizer.nesterov=false",
        "train.deterministic=true",
        "train.threads=1",
        "train.workers=0",
        "train.eval_every=1",
        "train.patience=null",
    ]


def run(command: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    with open(log, "w") as fh:
        proc = subprocess.run(
            command, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=300, check=False
        )
    assert proc.returncode == 0, f"{' '.join(command[:6])} ... failed:\n{log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def runs(neu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ddp")
    annotations = base / "annotations"
    annotations.mkdir()
    for cls in ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"):
        for xml in sorted((neu_root / "annotations").glob(f"{cls}_*.xml"))[:PER_CLASS]:
            shutil.copy(xml, annotations / xml.name)
    args = [str(CONFIG)]
    extra = overrides(annotations, neu_root / "images")
    ddp, single = base / "ddp", base / "single"
    ddp.mkdir()
    single.mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run([*torchrun, str(WORKER), *args, str(ddp), *extra], base / "ddp.log")
    run([sys.executable, str(WORKER), *args, str(single), *extra], base / "single.log")
    return {"ddp": ddp, "single": single}


def test_ranks_hold_identical_weights(runs: dict[str, Path]):
    rank0 = load_file(runs["ddp"] / "weights_rank0.safetensors")
    rank1 = load_file(runs["ddp"] / "weights_rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)


def test_ranks_match_one_process_with_the_same_global_batch(runs: dict[str, Path]):
    ddp = load_file(runs["ddp"] / "weights_rank0.safetensors")
    single = load_file(runs["single"] / "weights_rank0.safetensors")
    assert ddp.keys() == single.keys()
    worst = max(float((ddp[k].double() - single[k].double()).abs().max()) for k in ddp)
    assert worst < 1e-6

    # The tolerance means something only if training moved the weights well beyond it.
    from datasets.settings import load_config
    from training.config import TrainConfig
    from training.registry import build_model

    cfg = load_config(CONFIG, TrainConfig, ["model.image_size=64"])
    torch.manual_seed(cfg.train.seed)  # what fit does before building the model
    init = build_model(cfg.model, num_classes=len(cfg.data.classes)).state_dict()
    moved = max(float((single[k].double() - init[k].double()).abs().max()) for k in single)
    assert moved > 1e-3


def test_only_rank_zero_writes(runs: dict[str, Path]):
    assert not (runs["ddp"] / "rank1").exists()
    out = runs["ddp"] / "rank0"
    for name in ("last.pt", "metrics.json", "metrics.csv", "split.json", "config.json"):
        assert (out / name).is_file(), name
    assert (out / "bundle" / "manifest.json").is_file()
    checkpoint = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1 and len(checkpoint["history"]) == 2
    held = load_file(runs["ddp"] / "weights_rank0.safetensors")
    assert all(torch.equal(checkpoint["model"][k], held[k]) for k in held)
