"""Training the challenger under torchrun: a child that fails is one error naming the run, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from datasets.settings import REPO_ROOT, load_config
from inspection.retrain import challenger
from training.config import TrainConfig


def test_a_failing_torchrun_child_is_a_runtime_error_naming_its_exit_status_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher is replaced by an interpreter that exits 3, as torchrun does when a rank fails (a CUDA
    error, a bad data path): ``steel retrain`` catches RuntimeError, not CalledProcessError."""
    recipe = REPO_ROOT / "configs" / "train" / "yolo_n.yaml"
    train_cfg = load_config(recipe, TrainConfig, [f"train.out_dir={tmp_path / 'train'}"])
    monkeypatch.setattr(
        challenger, "torchrun_command", lambda nproc: [sys.executable, "-c", "import sys; sys.exit(3)"]
    )
    with pytest.raises(RuntimeError, match="exit status 3") as info:
        challenger.train_challenger(train_cfg, nproc=2, log=lambda line: None)
    assert str(tmp_path / "train_config.json") in str(info.value)
