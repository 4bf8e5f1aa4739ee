"""One recipe trained with several seeds, for the mean and spread a 288-image validation split needs
(one run moves 1-2 points of mAP@0.5 from seed to seed: choose on the mean, not on one lucky run).

Each seed trains into ``<out>/seed-<n>/`` with ``train.seed=n`` (the split stays the recipe's). Runs are
resumable: a seed with ``done.json`` is not trained again, a seed with a ``last.pt`` but no
``done.json`` (interrupted) resumes exactly from it, any other starts. Scores are the best bundle's
validation metrics (``val_metrics.json`` that ``fit`` writes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from datasets.settings import load_config
from training.config import TrainConfig
from training.trainer import fit

DONE = "done.json"
Status = Literal["trained", "resumed", "already done"]


@dataclass(frozen=True)
class SeedRun:
    seed: int
    out_dir: Path
    status: Status
    map50: float
    map50_95: float
    ap50: dict[str, float | None]


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (``ddof=1``; NaN for one run), min and max of one figure."""

    mean: float
    std: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread:
        arr = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
        if arr.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan)
        std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
        return cls(float(arr.mean()), std, float(arr.min()), float(arr.max()))


def seed_config(recipe: Path, seed: int, out: Path, overrides: Sequence[str]) -> TrainConfig:
    return load_config(
        recipe, TrainConfig, [*overrides, f"train.seed={seed}", f"train.out_dir={out / f'seed-{seed}'}"]
    )


def _read_scores(run_dir: Path, seed: int, status: Status) -> SeedRun:
    metrics = json.loads((run_dir / "val_metrics.json").read_text(encoding="utf-8"))
    return SeedRun(
        seed=seed,
        out_dir=run_dir,
        status=status,
        map50=float(metrics["map50"]) if metrics["map50"] is not None else math.nan,
        map50_95=float(metrics["map50_95"]) if metrics["map50_95"] is not None else math.nan,
        ap50={name: v["ap50"] for name, v in metrics["per_class"].items()},
    )


def run_seed(recipe: Path, seed: int, out: Path, overrides: Sequence[str]) -> SeedRun:
    """Train (or resume, or skip) one seed; returns its scores."""
    cfg = seed_config(recipe, seed, out, overrides)
    run_dir = Path(cfg.train.out_dir)
    if (run_dir / DONE).is_file():
        return _read_scores(run_dir, seed, "already done")
    resume = (run_dir / "last.pt").is_file()
    result = fit(cfg, resume=resume)
    if result.bundle_dir is None:
        raise RuntimeError(f"{run_dir}: seed {seed} ended without a bundle (no evaluation ran)")
    scores = _read_scores(run_dir, seed, "resumed" if resume else "trained")
    (run_dir / DONE).write_text(json.dumps({"seed": seed, "map50": scores.map50}) + "\n", encoding="utf-8")
    return scores


def summarise(runs: Sequence[SeedRun]) -> dict[str, Spread]:
    """``map50``, ``map50_95`` and ``ap50/<class>`` over the runs."""
    out = {"map50": Spread.of([r.map50 for r in runs]), "map50_95": Spread.of([r.map50_95 for r in runs])}
    for name in runs[0].ap50 if runs else []:
        out[f"ap50/{name}"] = Spread.of([r.ap50[name] for r in runs])
    return out


def markdown(runs: Sequence[SeedRun], summary: dict[str, Spread]) -> str:
    """Per-seed rows, then mean, standard deviation and min..max per figure."""
    keys = list(summary)
    lines = ["| seed | status | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in runs:
        values = [r.map50, r.map50_95, *(r.ap50[k.split("/", 1)[1]] for k in keys[2:])]
        lines.append(f"| {r.seed} | {r.status} | " + " | ".join(_fmt(v) for v in values) + " |")
    lines.append("| **mean** | | " + " | ".join(_fmt(summary[k].mean) for k in keys) + " |")
    lines.append("| std | | " + " | ".join(_fmt(summary[k].std) for k in keys) + " |")
    lines.append(
        "| min..max | | "
        + " | ".join(f"{_fmt(summary[k].low)}..{_fmt(summary[k].high)}" for k in keys)
        + " |"
    )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"
