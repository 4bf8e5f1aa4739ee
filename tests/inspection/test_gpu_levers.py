"""``bench/gpu_levers.py``, the lever runs a GPU session starts: its dry run (``--device cpu --tiny``)
trains real NEU-DET images for every chosen lever and seed, stops what outlives the deadline, and
summarises finished and unfinished runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from datasets.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "gpu_levers.py"


def run_levers(out, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--tiny", "--workers", "0"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=900, check=False, cwd=REPO_ROOT
    )


@pytest.mark.slow
def test_the_dry_run_trains_each_lever_and_seed_and_summarises_their_scores(tmp_path):
    args = ("--levers", "yolo-n", "pretrain", "--seeds", "0", "--epochs", "2", "--eval-every", "1")
    proc = run_levers(tmp_path, *args, "--parallel", "2", "--minutes", "10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"yolo-n", "pretrain"}
    for lever in ("yolo-n", "pretrain"):
        run = summary[lever]["runs"]["0"]
        assert run["status"] == "finished", (tmp_path / "logs" / f"{lever}-seed0.log").read_text()[-2000:]
        assert run["epochs"] == 2 and 0.0 <= run["map50"] <= 1.0
    assert (tmp_path / "pretrain" / "pretrain-0" / "backbone.safetensors").is_file()
    assert "| yolo-n | 1 |" in (tmp_path / "summary.md").read_text()


def test_runs_past_the_deadline_are_stopped_and_reported_unfinished(tmp_path):
    args = (
        "--levers",
        "yolo-s",
        "--seeds",
        "0",
        "1",
        "--epochs",
        "50",
        "--parallel",
        "1",
        "--minutes",
        "0.3",
    )
    proc = run_levers(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((tmp_path / "summary.json").read_text())["yolo-s"]["runs"]
    assert runs["0"]["status"] == "stopped at the deadline" and "map50" not in runs["0"]
    assert runs["1"]["status"] == "not started" and runs["1"]["epochs"] == 0
