"""``steel retrain`` and ``steel models list|show|activate|runs``.

Register in the ``steel`` app with ``app.command("retrain")(retrain_command)`` and
``app.add_typer(models_app, name="models")``. Heavy modules (torch) load inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from datasets.settings import ConfigError

DEFAULT_CONFIG = Path("configs/retrain.yaml")
DEFAULT_DB = "sqlite:///var/inspection.db"
EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the lock; cron can simply try again later

models_app = typer.Typer(
    help="The model registry: list versions, show one, activate one (promotion or rollback), retrain runs.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def retrain_command(
    config: Annotated[Path, typer.Option("--config", help="Retraining config (YAML)")] = DEFAULT_CONFIG,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: key.path=value (repeatable)")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Close an interrupted run as failed and start a new one")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be done; change nothing")
    ] = False,
    validate_config: Annotated[
        bool, typer.Option("--validate-config", help="Check the config and exit")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run's summary as one JSON object")
    ] = False,
) -> None:
    """Retrain on operators' reviews: collect, fine-tune a challenger, compare with the champion, promote or
    reject, record it. Idempotent: run it from cron or a systemd timer; a killed run resumes."""
    from inspection.retrain.config import load_retrain_config

    try:
        cfg = load_retrain_config(config, set_ or [])
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    if validate_config:
        typer.echo(f"{config}: ok")
        return
    from inspection.retrain.job import RetrainBusyError, retrain_status, run_retrain

    if dry_run:
        typer.echo(json.dumps(retrain_status(cfg), indent=None if as_json else 2))
        return
    try:
        # Progress and the summary on stdout (cron mails it); on stderr when stdout carries the JSON.
        outcome = run_retrain(cfg, restart=restart, log=lambda line: typer.echo(line, err=as_json))
    except RetrainBusyError as exc:
        raise _fail(str(exc), EXIT_BUSY) from None
    except (ValueError, OSError, RuntimeError) as exc:  # recorded as a failed run when one was open
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    if as_json:
        payload = {
            "status": outcome.status,
            "run_id": outcome.run_id,
            "challenger": outcome.challenger_version,
            "reason": outcome.reason,
            "summary": outcome.summary,
        }
        sys.stdout.write(json.dumps(payload) + "\n")
    if outcome.status == "failed":
        raise typer.Exit(1)


def _db_url(db: str | None, config: Path) -> str:
    if db:
        return db
    if config.is_file():
        from inspection.retrain.config import load_retrain_config

        try:
            return load_retrain_config(config).db
        except ConfigError as exc:
            raise _fail(str(exc), 2) from None
    return DEFAULT_DB


DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: the retrain config's)")]
ConfigOption = Annotated[Path, typer.Option("--config", help="Retraining config giving the database")]


def _repository(db: str | None, config: Path):
    from inspection.storage.db import upgrade
    from inspection.storage.repository import Repository

    repo = Repository(_db_url(db, config))
    upgrade(repo.engine)
    return repo


def _map50(metrics: dict[str, Any]) -> str:
    value = metrics.get("map50")
    return "-" if value is None else f"{value:.3f}"


@models_app.command("list")
def list_command(
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every registered model version, newest first; the active one marked."""
    from sqlalchemy import select

    from inspection.storage.schema import ModelVersion

    repo = _repository(db, config)
    try:
        with repo.transaction() as s:
            rows = list(s.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))
    finally:
        repo.dispose()
    items = [
        {
            "version": r.version,
            "active": bool(r.is_active),
            "family": r.family,
            "map50": (r.metrics or {}).get("map50"),
            "metrics_split": (r.metrics or {}).get("split"),
            "created_at": r.created_at.isoformat() if r.created_at else None,
            "activated_at": r.activated_at.isoformat() if r.activated_at else None,
            "promoted_by": r.promoted_by,
            "path": r.path,
        }
        for r in rows
    ]
    if as_json:
        sys.stdout.write(json.dumps(items) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("", "version", "family", "mAP@0.5", "on", "registered", "activated by")
    for it in items:
        table.add_row(
            "*" if it["active"] else "",
            it["version"],
            it["family"] or "-",
            _map50(it),
            it["metrics_split"] or "-",
            (it["created_at"] or "")[:19],
            it["promoted_by"] or "-",
        )
    Console().print(table)


@models_app.command("show")
def show_command(
    version: Annotated[str, typer.Argument(help="Model version")],
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One version: its manifest facts, metrics per class, and the retrain decision that produced it."""
    from sqlalchemy import select

    from inspection.storage.schema import ModelVersion, RetrainRun

    repo = _repository(db, config)
    try:
        with repo.transaction() as s:
            row = s.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()
            if row is None:
                raise _fail(f"model version {version!r} is not registered")
            run = s.scalars(
                select(RetrainRun)
                .where(RetrainRun.challenger_version == version)
                .order_by(RetrainRun.id.desc())
            ).first()
            info = {
                "version": row.version,
                "active": bool(row.is_active),
                "path": row.path,
                "family": row.family,
                "class_names": row.class_names,
                "metrics": row.metrics,
                "activated_at": row.activated_at.isoformat() if row.activated_at else None,
                "promoted_by": row.promoted_by,
                "note": row.note,
                "retrain_run": None
                if run is None
                else {
                    "id": run.id,
                    "status": run.status,
                    "champion": run.champion_version,
                    "reason": run.decision_reason,
                    "summary": run.summary,
                },
            }
    finally:
        repo.dispose()
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    typer.echo(f"{info['version']}{'  (active)' if info['active'] else ''}  {info['family'] or ''}")
    typer.echo(f"  path: {info['path']}")
    typer.echo(f"  mAP@0.5 {_map50(info['metrics'] or {})} on {(info['metrics'] or {}).get('split', '-')}")
    for name, v in ((info["metrics"] or {}).get("per_class") or {}).items():
        ap50 = v.get("ap50")
        typer.echo(f"    {name:<18} AP50 {'-' if ap50 is None else f'{ap50:.3f}'}")
    if info["promoted_by"]:
        typer.echo(f"  activated {info['activated_at']} by {info['promoted_by']}: {info['note'] or ''}")
    if run is not None:
        from inspection.retrain.report import format_summary

        typer.echo("")
        typer.echo(format_summary({**(run.summary or {}), "status": run.status, "run_id": run.id}))


@models_app.command("activate")
def activate_command(
    version: Annotated[str, typer.Argument(help="Model version to put on the line (promotion or rollback)")],
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    by: Annotated[str | None, typer.Option("--by", help="Who (recorded)")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why (recorded)")] = None,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Load the bundle before activating")
    ] = True,
) -> None:
    """Make VERSION the active model; running daemons swap to it at their next promotion check."""
    import getpass

    from sqlalchemy import select

    from inspection.storage.schema import ModelVersion

    repo = _repository(db, config)
    try:
        with repo.transaction() as s:
            row = s.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()
            path = None if row is None else row.path
        if row is None:
            raise _fail(f"model version {version!r} is not registered (see steel models list)")
        if check:
            from training.bundle import BundleError, load_bundle

            if not path:
                raise _fail(f"{version}: no bundle path registered; a daemon could not load it")
            try:
                load_bundle(path)
            except (BundleError, OSError, ValueError) as exc:
                raise _fail(f"{version}: bundle at {path} does not load: {exc}") from None
        who = by or f"cli:{getpass.getuser()}"
        repo.activate_model(version, promoted_by=who, note=note or "steel models activate")
    finally:
        repo.dispose()
    typer.echo(f"{version} is active (daemons watching the database switch at their next check)")


@models_app.command("runs")
def runs_command(
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    limit: Annotated[int, typer.Option("--limit")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The latest retrain runs with their decisions."""
    from sqlalchemy import select

    from inspection.storage.schema import RetrainRun

    repo = _repository(db, config)
    try:
        with repo.transaction() as s:
            rows = list(s.scalars(select(RetrainRun).order_by(RetrainRun.id.desc()).limit(limit)))
    finally:
        repo.dispose()
    items = [
        {
            "id": r.id,
            "status": r.status,
            "started_at": r.started_at.isoformat() if r.started_at else None,
            "finished_at": r.finished_at.isoformat() if r.finished_at else None,
            "champion": r.champion_version,
            "challenger": r.challenger_version,
            "last_review_id": r.last_review_id,
            "reason": r.decision_reason,
        }
        for r in rows
    ]
    if as_json:
        sys.stdout.write(json.dumps(items) + "\n")
        return
    for it in items:
        typer.echo(
            f"run {it['id']:>4}  {it['status']:<9} {(it['started_at'] or '')[:19]}  "
            f"{it['champion'] or '-'} -> {it['challenger'] or '-'}  {it['reason'] or ''}"
        )
