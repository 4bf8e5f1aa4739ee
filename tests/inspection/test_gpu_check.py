"""``bench/gpu_check.py``: without a CUDA device it says so in one JSON object and exits 0; its dry run on
the CPU (``--device cpu``) runs every section (AMP + channels_last training step against float32,
predictor parity per backend, the daemon over a simulated strip per backend) on real NEU-DET images."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from datasets.settings import REPO_ROOT, data_root

SCRIPT = REPO_ROOT / "bench" / "gpu_check.py"


def run_check(*args: str, hide_gpu: bool = False) -> tuple[int, dict]:
    env = dict(os.environ)
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def test_without_a_cuda_device_the_check_is_skipped_with_a_clear_json_report():
    code, report = run_check(hide_gpu=True)
    assert code == 0
    assert report["status"] == "skipped" and report["reason"] == "skipped: no CUDA device"
    assert report["cuda_available"] is False


def test_asking_for_cuda_where_there_is_none_fails_with_a_reason():
    code, report = run_check("--device", "cuda", hide_gpu=True)
    assert code == 1 and report["status"] == "failed" and "no CUDA device" in report["reason"]


@pytest.mark.slow
def test_the_dry_run_on_the_cpu_runs_every_section_on_real_images(tmp_path):
    if not (data_root() / "images").is_dir():
        pytest.skip(f"NEU-DET development split not found at {data_root()} (set STEEL_DATA)")
    out = tmp_path / "report.json"
    code, report = run_check(
        "--device", "cpu", "--along", "3", "--parity-images", "6", "--train-batch", "2", "--out", str(out)
    )
    assert json.loads(out.read_text()) == report
    assert code == 0 and report["status"] == "passed", report
    step = report["train_step"]
    assert step["amp"] == "bfloat16" and step["channels_last"] and step["images"] == 2
    assert step["cpu_loss_before_after"][0] > 0 and step["max_relative_difference"] <= step["tolerance"]
    parity = report["predictor_parity"]["backends"]
    assert set(parity) == {"torch", "onnxruntime"} and parity["onnxruntime"]["matched"] > 0
    assert parity["onnxruntime"]["match_rate"] == 1.0 and parity["onnxruntime"]["max_box_px"] <= 1.0
    for backend in ("torch", "onnxruntime"):
        daemon = report[f"daemon_{backend}"]
        assert daemon["frames"] == 1 and daemon["tiles"] == 12 and daemon["daemon_tiles_per_s"] > 0
        assert backend in daemon["runs_on"] and daemon["latency_ms_p50"] > 0
