"""Issue 12's accuracy levers over seeds, run side by side against a deadline: for a lent GPU session.

Run from the repository root, after ``make gpu-check``, with what is left of the session's device time:
``python bench/gpu_levers.py --out $OUT/levers --minutes 8 --parallel 6 [--levers yolo-s p2 ...]
[--seeds 0 1 2] [--epochs 100] [--device cuda]``

Each (lever, seed) is one ``bench/bench_seeds.py`` run of ``configs/train/yolo_n.yaml`` with the lever's
``--set`` overrides (the ``pretrain`` lever first runs ``steel pretrain`` for the seed and starts from its
backbone). ``--parallel`` of them run at once (a small detector leaves an H200 mostly idle: several share
it). At the deadline the ones still running are stopped; every run checkpoints each epoch, so the same
command resumes them in a later session (bring the run folders back). Writes ``summary.json`` and
``summary.md``: per lever the finished seeds' mean and spread, and for unfinished runs the best
validation mAP@0.5 so far and its epoch. ``--device cpu --tiny`` is the dry run the tests use. Never
asserts.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.seeds import Spread  # noqa: E402

RECIPE = "configs/train/yolo_n.yaml"
LEVERS: dict[str, list[str]] = {
    "yolo-n": [],  # the control: the same schedule without a lever
    "yolo-s": ["model.yolo.size=s"],
    "p2": ["model.yolo.p2=true"],
    "r320": ["model.image_size=320"],
    "mosaic-copy-paste": ["data.augment.mosaic_p=0.5", "data.augment.copy_paste_p=0.5"],
    "pretrain": [],  # + model.yolo.weights from its own `steel pretrain` run
}
TINY = ["data.subset=8", "model.image_size=64", "train.batch_size=4", "eval.batch_size=4"]


def job_command(lever: str, seed: int, args: argparse.Namespace) -> str:
    """The shell command of one (lever, seed) run."""
    out = Path(args.out) / lever
    sets = [*LEVERS[lever], f"train.epochs={args.epochs}", f"train.eval_every={args.eval_every}"]
    sets += [f"train.device={args.device}", f"train.workers={args.workers}", f"name=neu-{lever}"]
    sets += TINY if args.tiny else []
    steps = []
    if lever == "pretrain":
        pre = out / f"pretrain-{seed}"
        pre_sets = [f"seed={seed}", f"epochs={args.epochs}", f"device={args.device}", f"out_dir={pre}"]
        pre_sets += ["data.subset=8", "model.image_size=64", "batch_size=4"] if args.tiny else []
        resume = ["--resume"] if (pre / "last.pt").is_file() else []
        steps.append([sys.executable, "-m", "steel", "pretrain", "configs/pretrain/yolo_n.yaml"])
        steps[-1] += [x for s in pre_sets for x in ("--set", s)] + resume
        sets.append(f"model.yolo.weights={pre / 'backbone.safetensors'}")
    run = [sys.executable, "bench/bench_seeds.py", RECIPE, "--seeds", str(seed), "--out", str(out)]
    steps.append(run + [x for s in sets for x in ("--set", s)])
    return " && ".join(shlex.join(step) for step in steps)


def run_jobs(commands: dict[str, str], *, parallel: int, deadline: float, logs: Path) -> dict[str, str]:
    """Run the commands, ``parallel`` at a time, until done or ``deadline`` (time.monotonic); each one's
    status: finished, failed (exit status), stopped at the deadline, or not started."""
    logs.mkdir(parents=True, exist_ok=True)
    waiting, running, status = list(commands), {}, {}
    while (waiting or running) and time.monotonic() < deadline:
        while waiting and len(running) < parallel:
            key = waiting.pop(0)
            log = (logs / f"{key}.log").open("a", encoding="utf-8")
            running[key] = subprocess.Popen(
                ["bash", "-c", commands[key]], stdout=log, stderr=subprocess.STDOUT
            )
        for key, proc in list(running.items()):
            if proc.poll() is not None:
                status[key] = "finished" if proc.returncode == 0 else f"failed ({proc.returncode})"
                del running[key]
        time.sleep(1.0)
    for key, proc in running.items():
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        status[key] = "stopped at the deadline"
    status.update({key: "not started" for key in waiting})
    return status


def run_figures(run_dir: Path) -> dict[str, object]:
    """A run's best validation mAP@0.5 so far and its epoch (``metrics.csv``), and its final scores when
    it finished (``val_metrics.json``)."""
    figures: dict[str, object] = {"epochs": 0, "best_map50": None, "best_epoch": None}
    metrics = run_dir / "metrics.csv"
    if metrics.is_file():
        epochs = list(csv.DictReader(metrics.open(encoding="utf-8")))
        rows = [r for r in epochs if r.get("map50")]
        figures["epochs"] = len(epochs)
        if rows:
            best = max(rows, key=lambda r: float(r["map50"]))
            figures["best_map50"], figures["best_epoch"] = float(best["map50"]), int(best["epoch"])
    final = run_dir / "val_metrics.json"
    if (run_dir / "done.json").is_file() and final.is_file():
        scores = json.loads(final.read_text(encoding="utf-8"))
        figures["map50"], figures["map50_95"] = scores["map50"], scores["map50_95"]
        figures["ap50"] = {name: v["ap50"] for name, v in scores["per_class"].items()}
    return figures


def summary_markdown(summary: dict[str, dict[str, object]]) -> str:
    lines = [
        "| lever | seeds finished | mAP@0.5 (mean ± std) | mAP@0.5:0.95 | unfinished: best mAP@0.5 (epoch) |",
        "|---|--:|---|---|---|",
    ]
    for lever, entry in summary.items():
        runs = entry["runs"]
        assert isinstance(runs, dict)
        done = [r for r in runs.values() if "map50" in r]
        m50, m5095 = Spread.of([r["map50"] for r in done]), Spread.of([r["map50_95"] for r in done])
        partial = ", ".join(
            f"{r['best_map50']:.4f} ({r['best_epoch']})"
            for r in runs.values()
            if "map50" not in r and r["best_map50"] is not None
        )
        cells = [
            lever,
            str(len(done)),
            f"{m50.mean:.4f} ± {m50.std:.4f}",
            f"{m5095.mean:.4f} ± {m5095.std:.4f}",
        ]
        lines.append("| " + " | ".join([*cells, partial or "-"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=8.0, help="stop whatever still runs after this")
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu", "auto"])
    parser.add_argument("--tiny", action="store_true", help="8 images at 64 px: the dry run")
    args = parser.parse_args(argv)
    commands = {
        f"{lever}-seed{seed}": job_command(lever, seed, args) for lever in args.levers for seed in args.seeds
    }
    status = run_jobs(
        commands,
        parallel=args.parallel,
        deadline=time.monotonic() + 60 * args.minutes,
        logs=args.out / "logs",
    )
    summary = {
        lever: {
            "overrides": LEVERS[lever],
            "runs": {
                str(seed): {
                    "status": status[f"{lever}-seed{seed}"],
                    **run_figures(args.out / lever / f"seed-{seed}"),
                }
                for seed in args.seeds
            },
        }
        for lever in args.levers
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    table = summary_markdown(summary)
    (args.out / "summary.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
