"""``bench/bench_seeds.py`` on a tiny recipe: every seed trained once into its own folder, mean and spread
computed from the runs' own validation metrics, a rerun trains nothing and an interrupted seed resumes."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from datasets.settings import REPO_ROOT
from training.seeds import DONE, Spread

RECIPE = REPO_ROOT / "configs" / "train" / "yolo_n.yaml"
TINY = ["data.subset=8", "train.epochs=1", "train.max_steps=2", "train.batch_size=4", "train.eval_every=1",
        "train.threads=1", "model.image_size=64"]  # fmt: skip


def bench_main():
    spec = importlib.util.spec_from_file_location("bench_seeds", REPO_ROOT / "bench" / "bench_seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run(capsys: pytest.CaptureFixture[str], out: Path, *extra: str) -> tuple[int, dict]:
    sets = [arg for o in [*TINY, *extra] for arg in ("--set", o)]
    code = bench_main()([str(RECIPE), "--seeds", "0", "1", "--out", str(out), *sets, "--json"])
    captured = capsys.readouterr().out.strip()
    return code, (json.loads(captured) if code == 0 else {})


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def val_map50(run_dir: Path) -> float:
    return json.loads((run_dir / "val_metrics.json").read_text())["map50"]


def test_seeds_are_trained_once_each_and_summarised(neu_root: Path, tmp_path: Path, capsys):
    code, report = run(capsys, tmp_path)
    assert code == 0
    assert [s["seed"] for s in report["seeds"]] == [0, 1]
    assert all(s["status"] == "trained" for s in report["seeds"])
    values = [val_map50(tmp_path / f"seed-{n}") for n in (0, 1)]
    summary = report["summary"]["map50"]
    assert summary["mean"] == pytest.approx(statistics.mean(values))
    assert summary["std"] == pytest.approx(statistics.stdev(values))
    assert (summary["low"], summary["high"]) == (min(values), max(values))
    assert set(report["summary"]) >= {"map50_95", "ap50/crazing", "ap50/scratches"}
    configs = [json.loads((tmp_path / f"seed-{n}" / "config.json").read_text()) for n in (0, 1)]
    assert [c["train"]["seed"] for c in configs] == [0, 1]

    checkpoint = tmp_path / "seed-0" / "last.pt"
    stamp = checkpoint.stat().st_mtime_ns
    code, again = run(capsys, tmp_path)
    assert code == 0 and all(s["status"] == "already done" for s in again["seeds"])
    assert checkpoint.stat().st_mtime_ns == stamp  # nothing retrained
    assert again["summary"]["map50"] == report["summary"]["map50"]

    # Seed 1 interrupted after its first epoch: it resumes from last.pt and runs only epoch 2.
    first_epoch = json.loads((tmp_path / "seed-1" / "metrics.json").read_text())[0]
    (tmp_path / "seed-1" / DONE).unlink()
    code, resumed = run(capsys, tmp_path, "train.epochs=2")
    assert code == 0 and [s["status"] for s in resumed["seeds"]] == ["already done", "resumed"]
    history = json.loads((tmp_path / "seed-1" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2] and history[0] == first_epoch


def test_a_config_error_exits_2_before_any_training(tmp_path: Path, capsys):
    code = bench_main()([str(RECIPE), "--seeds", "0", "--out", str(tmp_path), "--set", "train.lr=oops"])
    assert code == 2 and "train.lr" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("values", "mean", "std", "low", "high"),
    [
        ([0.7, 0.8, 0.9], 0.8, 0.1, 0.7, 0.9),
        ([0.75, None, 0.77], 0.76, math.sqrt(0.0002), 0.75, 0.77),  # a class without AP is left out
    ],
)
def test_spread_is_mean_sample_std_and_range(values, mean, std, low, high):
    spread = Spread.of(values)
    assert (spread.mean, spread.std, spread.low, spread.high) == pytest.approx((mean, std, low, high))


def test_one_seed_has_no_spread():
    assert math.isnan(Spread.of([0.8]).std) and Spread.of([0.8]).mean == 0.8
