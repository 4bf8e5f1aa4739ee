"""Helper of ``test_ddp.py``: run the real trainer (alone or under ``torchrun``), then save the weights
this process ends with, so the test can compare ranks with each other and with a single process.

Usage: ``python ddp_worker.py CONFIG OUT_BASE [key=value ...]``. The trainer writes into
``OUT_BASE/rank<RANK>`` (so anything a non-zero rank writes is visible), and this script writes
``OUT_BASE/weights_rank<RANK>.safetensors`` after ``fit`` returns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from datasets.settings import load_config
from training import trainer
from training.config import TrainConfig
from training.ema import unwrap


def main(argv: list[str]) -> None:
    config, base, overrides = argv[0], Path(argv[1]), argv[2:]
    rank = int(os.environ.get("RANK", "0"))
    cfg = load_config(config, TrainConfig, [*overrides, f"train.out_dir={base / f'rank{rank}'}"])

    held: list = []
    real_train_one_epoch = trainer.train_one_epoch

    def recording_train_one_epoch(model, loader, **kwargs):
        held[:] = [model]
        return real_train_one_epoch(model, loader, **kwargs)

    trainer.train_one_epoch = recording_train_one_epoch
    trainer.fit(cfg)
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(held[0]).state_dict().items()}
    save_file(state, str(base / f"weights_rank{rank}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1:])
