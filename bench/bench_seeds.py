"""Train one recipe with several seeds and print the mean and spread of validation mAP@0.5, mAP@0.5:0.95
and per-class AP50 (the "mean and spread over 3 seeds" the accuracy targets are judged on).

Run from the repository root; resumable (rerun the same command after an interruption):
``python bench/bench_seeds.py configs/train/yolo_n.yaml --seeds 0 1 2 --out runs/seeds/yolo_n``
``[--set key.path=value ...] [--json]``

Each seed trains into ``OUT/seed-N`` with ``train.seed=N`` (``--set`` overrides apply to every seed; the
split file stays the recipe's). See :mod:`training.seeds`. Prints a Markdown table; never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasets.settings import ConfigError  # noqa: E402
from training.seeds import markdown, run_seed, seed_config, summarise  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, help="training recipe (YAML)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True, help="one seed-N folder per seed goes here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key.path=value")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    try:
        for seed in args.seeds:  # every config first: a typo fails before hours of training
            seed_config(args.recipe, seed, args.out, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs = []
    for seed in args.seeds:
        with contextlib.redirect_stdout(sys.stderr):  # training's log lines; stdout keeps the result only
            run = run_seed(args.recipe, seed, args.out, args.overrides)
        print(f"seed {seed}: {run.status}, val mAP@0.5 {run.map50:.4f}", file=sys.stderr, flush=True)
        runs.append(run)
    summary = summarise(runs)
    if args.json:
        payload = {
            "recipe": str(args.recipe),
            "seeds": [{**dataclasses.asdict(r), "out_dir": str(r.out_dir)} for r in runs],
            "summary": {k: dataclasses.asdict(v) for k, v in summary.items()},
        }
        print(json.dumps(_no_nan(payload), allow_nan=False))
    else:
        print(f"{args.recipe}: {len(runs)} seeds {args.seeds}\n")
        print(markdown(runs, summary))
    return 0


def _no_nan(value: object) -> object:
    """NaN (no figure, e.g. the std of one seed) as JSON null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
