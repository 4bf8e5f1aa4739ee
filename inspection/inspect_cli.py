"""``steel inspect``: run the daemon from a config, with signals wired for a service manager."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from datasets.settings import REPO_ROOT, ConfigError, load_config
from inspection.log_format import configure_logging

if TYPE_CHECKING:
    from inspection.config import InspectionConfig

DEFAULT_CONFIG = REPO_ROOT / "configs" / "inspection.yaml"


def inspect_command(
    config: Annotated[Path, typer.Option("--config", help="Daemon config (YAML)")] = DEFAULT_CONFIG,
    source: Annotated[
        str | None,
        typer.Option("--source", help="folder:PATH | video:URL | camera:N | strip-sim:SPEC | genicam:CTI"),
    ] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="SQLAlchemy URL (sqlite:///... or postgresql+psycopg://...)")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model bundle folder")] = None,
    once: Annotated[bool, typer.Option("--once", help="Process what is available, then exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary at exit")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: key.path=value")] = None,
    validate_config: Annotated[
        bool, typer.Option("--validate-config", help="Check the config and exit")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
    log_format: Annotated[
        str, typer.Option("--log-format", help="json: one JSON object per stderr line; text: for people")
    ] = "json",
) -> None:
    """Run the inspection daemon: frames in, defects in SQL out."""
    # The daemon's config models and preflight cost ~0.1 s each to import: `steel --help` and the other
    # commands do without them.
    from inspection.config import InspectionConfig

    overrides = list(set_ or [])
    if source:
        overrides.append(f"source={source}")
    if db:
        overrides.append(f"db={db}")
    try:
        cfg = load_config(config, InspectionConfig, overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from inspection.preflight import preflight  # ~0.1 s (see above): after the config is valid

    problems = preflight(cfg, model=model)
    if problems:
        for problem in problems:
            typer.echo(f"error: {config}: {problem}", err=True)
        raise typer.Exit(2)
    if validate_config:
        typer.echo(f"{config}: ok")
        return
    configure_logging(log_level, "text" if log_format == "text" else "json")
    _run_daemon(cfg, once=once, model=model, as_json=as_json)


def _run_daemon(cfg: InspectionConfig, *, once: bool, model: str | None, as_json: bool) -> None:
    """Start the daemon with signals wired for a service manager, run it, print its summary."""
    from inspection.daemon import Daemon  # torch and the whole pipeline: seconds to import
    from inspection.metrics_factory import make_metrics  # the Prometheus client and its HTTP server

    metrics, health_server = make_metrics(cfg)
    daemon = Daemon(cfg, once=once, model=model, metrics=metrics)
    try:
        daemon.start()
    except (ValueError, OSError, ImportError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if health_server is not None:
        health_server.attach(daemon.health)
        health_server.start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
        signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
        if hasattr(signal, "SIGHUP"):
            signal.signal(
                signal.SIGHUP, lambda *_: threading.Thread(target=daemon.reload_model, daemon=True).start()
            )
    summary = daemon.run()
    if health_server is not None:
        health_server.stop()
    _print_summary(summary.to_dict(), as_json=as_json)


def _print_summary(d: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        typer.echo(
            f"{d['frames']} frames ({d['frames_failed']} failed, {d['frames_dropped']} dropped, "
            f"{d['frames_already_stored']} already stored), {d['defects']} defects "
            f"{d['per_class']} in {d['elapsed_s']:.1f} s with {d['model_version']}"
        )
        a = d.get("anomalies") or {}
        if a.get("frames_scored"):
            typer.echo(
                f"anomaly scores ({a['model_version']}, threshold {a['threshold']:.2f}): "
                f"max {a['score_max']:.2f}, p50 {a['score_p50']:.2f}, p99 {a['score_p99']:.2f}; "
                f"{a['frames_above_threshold']} frames above, {a['anomaly_defects']} anomaly defects "
                f"({a['regions_explained_by_detections']} regions explained by detections)"
            )
            if a.get("detection_evidence") is not None:
                typer.echo(
                    f"{a['detections_vetoed']} detections dropped: their boxes looked no more unusual than "
                    f"clean steel (anomaly below {a['detection_evidence']:.2f})"
                )
