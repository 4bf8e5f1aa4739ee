"""``steel calibrate --clean FOLDER``: per-class and anomaly thresholds for a false-alarm budget on a
line's own good steel, written as a new, promotable bundle version (see :mod:`inspection.calibration`)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from datasets.settings import ConfigError, load_config

if TYPE_CHECKING:  # the CLI loads the calibration code (numpy, images) only when the command runs
    from inspection.calibration import CalibrationResult
    from inspection.config import InspectionConfig

DEFAULT_CONFIG = Path("configs/inspection.yaml")
DEFAULT_SPLIT = Path("configs/splits/neu-det-dev.json")


def calibrate_command(
    clean: Annotated[
        Path, typer.Option("--clean", exists=True, file_okay=False, help="Frames of the line's good steel")
    ],
    defects: Annotated[
        Path | None,
        typer.Option("--defects", exists=True, help="Annotated defect frames of the line (any format)"),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="Bundle (default: active, else config)")
    ] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", min=0, help="False alarms per 1,000 clean tiles (1)")
    ] = None,
    budget_per_100m: Annotated[
        float | None,
        typer.Option(
            "--budget-per-100m", min=0, help="False alarms per 100 m of strip (config's mm_per_line, tiling)"
        ),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="New version (default: <src>-cal<time>)")
    ] = None,
    config: Annotated[Path, typer.Option("--config", help="Inspection config (tiling, db)")] = DEFAULT_CONFIG,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: the config's)")] = None,
    registry: Annotated[Path, typer.Option("--registry", help="Where bundles go")] = Path("models/registry"),
    split: Annotated[Path, typer.Option("--split", help="Validation side of this split prices recall")] = (
        DEFAULT_SPLIT
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object")] = False,
) -> None:
    """Measure false alarms on clean frames, set thresholds for the budget, register a new bundle version."""
    cfg = _checked_config(config, db, budget, budget_per_100m)
    from inspection.calibrate_run import run_calibration  # the detector and scoring: torch, seconds

    try:
        result, path = run_calibration(
            cfg,
            clean=clean,
            defects=defects,
            model=model,
            budget=budget,
            budget_per_100m=budget_per_100m,
            version=version or "",
            registry=registry,
            split=split,
            stamp=datetime.now(UTC).strftime("%Y%m%d%H%M"),
        )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(
            json.dumps({"version": result.version, "path": str(path), **result.manifest_field()}) + "\n"
        )
        return
    _print(result, path)


def _checked_config(
    config: Path, db: str | None, budget: float | None, budget_per_100m: float | None
) -> InspectionConfig:
    """The inspection config with ``--db`` applied; a bad config or two budgets exit 2 with one line."""
    from inspection.config import InspectionConfig  # ~0.1 s to import: the other commands do without it

    try:
        cfg = load_config(config, InspectionConfig, [f"db={db}"] if db else [])
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if budget is not None and budget_per_100m is not None:
        typer.echo("error: give --budget (per 1,000 tiles) or --budget-per-100m, not both", err=True)
        raise typer.Exit(2)
    return cfg


def _print(result: CalibrationResult, path: Path) -> None:
    strip = result.strip
    typer.echo(
        f"{result.clean_tiles} clean tiles; budget {result.budget_per_1000:.4g} false alarms per 1,000 tiles"
        f" = {strip['budget_per_100m']:.4g} per 100 m of strip ({strip['tiles_per_100m']:.0f} tiles per"
        f" 100 m: {strip['tiles_across']} across {strip['frame_width_px']} px, rows every"
        f" {strip['tile_hw'][0] - strip['overlap_hw'][0]} lines of {strip['mm_per_line']} mm)"
    )
    typer.echo("class thresholds (before -> after):")
    for name, after in result.after.items():
        typer.echo(f"  {name:<16} {result.before[name]:.3f} -> {after:.3f}")
    d = result.detector_alarms_per_1000
    m = strip["detector_alarms_per_100m"]
    typer.echo(
        f"detector alarms per 1,000 clean tiles: {d['before']:.1f} -> {d['after']:.1f}"
        f" (per 100 m: {m['before']:.1f} -> {m['after']:.1f})"
    )
    a = result.anomaly
    if a:
        before = "none" if a["threshold_before"] is None else f"{a['threshold_before']:.3f}"
        per_m = strip["anomaly_alarms_per_100m"]
        typer.echo(
            f"anomaly threshold {before} -> {a['threshold_after']:.3f}; alarms per 1,000 clean tiles "
            f"{a['alarms_before'] or 0.0:.1f} -> {a['alarms_after']:.1f} (per 100 m: "
            f"{per_m['before'] or 0.0:.1f} -> {per_m['after']:.1f})"
        )
        ev = a["detection_evidence_before"]
        typer.echo(
            f"detection evidence level {'none' if ev is None else f'{ev:.3f}'} -> "
            f"{a['detection_evidence_after']:.3f} (quantile {a['detection_evidence_quantile']:g} of them)"
        )
    for name, figures in result.validation.items():
        typer.echo(
            f"{name}: "
            + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        )
    typer.echo(
        f"new bundle {result.version} at {path} (registered; promote: steel models activate {result.version})"
    )
