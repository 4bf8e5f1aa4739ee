"""``steel models list|show|activate|history|runs|snapshot``: the registry, its audit trail, retrain runs.

Activating a version the retrain gate rejected needs ``--force`` and a ``--reason``; every activation is a
row of the history (``steel models history``). ``steel models snapshot drop|accept RUN`` decides whether a
run's data snapshot may be replayed into later training sets, recorded in SQL with who and why.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from datasets.settings import ConfigError
from inspection.retrain.config import check_database_url, load_retrain_config
from inspection.retrain.report import format_summary
from inspection.storage.db import upgrade
from inspection.storage.model_history import (
    activation_history,
    gate_rejected,
    model_version,
    model_versions,
    run_of_challenger,
)
from inspection.storage.model_registry import activate_model
from inspection.storage.repository import Repository
from inspection.storage.retrain_store import AUDIT_NAME_CHARS, recent_retrain_runs, record_snapshot_decision

DEFAULT_CONFIG = Path("configs/retrain.yaml")
DEFAULT_DB = "sqlite:///var/inspection.db"

models_app = typer.Typer(
    help="The model registry: list versions, show one, activate one (promotion or rollback), history, runs.",
    no_args_is_help=True,
    add_completion=False,
)
snapshot_app = typer.Typer(help="Replay or drop a retrain run's data snapshot.", no_args_is_help=True)
models_app.add_typer(snapshot_app, name="snapshot")


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _who(by: str | None) -> str:
    """The ``--by`` name recorded in the audit tables (default: the login), within their column width."""
    width = AUDIT_NAME_CHARS
    name = by if by is not None else f"cli:{getpass.getuser()}"
    if not name.strip() or len(name) > width:
        raise fail(f"--by: a name of 1 to {width} characters is recorded, got {len(name)} characters", 2)
    return name


def _db_url(db: str | None, config: Path) -> str:
    if db:
        try:
            return check_database_url(db)
        except ValueError as exc:
            raise fail(f"--db: {exc}", 2) from None
    if config.is_file():
        try:
            return load_retrain_config(config).db
        except ConfigError as exc:
            raise fail(str(exc), 2) from None
    return DEFAULT_DB


DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: the retrain config's)")]
ConfigOption = Annotated[Path, typer.Option("--config", help="Retraining config giving the database")]
JsonOption = Annotated[bool, typer.Option("--json")]


def database_error(exc: Exception) -> str:
    """One line for a database that cannot be opened: the driver's first line, never the URL (it may
    hold a password)."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"cannot open the database: {type(cause).__name__}: {first}"


def _repository(db: str | None, config: Path) -> Repository:
    url = _db_url(db, config)
    try:
        repo = Repository(url)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(database_error(exc)) from None
    try:
        upgrade(repo.engine)
    except (SQLAlchemyError, OSError) as exc:
        repo.dispose()
        raise fail(database_error(exc)) from None
    return repo


@contextmanager
def _session(db: str | None, config: Path) -> Iterator[Session]:
    """One transaction on the database (migrated first); the engine is disposed afterwards."""
    repo = _repository(db, config)
    try:
        with repo.transaction() as session:
            yield session
    finally:
        repo.dispose()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _map50(metrics: dict[str, Any]) -> str:
    value = metrics.get("map50")
    return "-" if value is None else f"{value:.3f}"


@models_app.command("list")
def list_command(
    db: DbOption = None, config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False
) -> None:
    """Every registered model version, newest first; the active one marked."""
    with _session(db, config) as s:
        items: list[dict[str, Any]] = [
            {
                "version": r.version,
                "active": bool(r.is_active),
                "family": r.family,
                "map50": (r.metrics or {}).get("map50"),
                "metrics_split": (r.metrics or {}).get("split"),
                "created_at": _iso(r.created_at),
                "activated_at": _iso(r.activated_at),
                "promoted_by": r.promoted_by,
                "path": r.path,
            }
            for r in model_versions(s)
        ]
    if as_json:
        sys.stdout.write(json.dumps(items) + "\n")
        return
    for it in items:
        typer.echo(
            f"{'*' if it['active'] else ' '} {it['version']:<28} {it['family'] or '-':<12} "
            f"mAP@0.5 {_map50(it)} on {it['metrics_split'] or '-':<6} {(it['created_at'] or '')[:19]}  "
            f"{it['promoted_by'] or '-'}"
        )


def _version_info(s: Session, version: str) -> dict[str, Any]:
    row = model_version(s, version)
    if row is None:
        raise fail(f"model version {version!r} is not registered")
    run = run_of_challenger(s, version)
    return {
        "version": row.version,
        "active": bool(row.is_active),
        "path": row.path,
        "family": row.family,
        "class_names": row.class_names,
        "metrics": row.metrics,
        "activated_at": _iso(row.activated_at),
        "promoted_by": row.promoted_by,
        "note": row.note,
        "activations": [a.to_dict() for a in activation_history(s, version=version)],
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


@models_app.command("show")
def show_command(
    version: Annotated[str, typer.Argument(help="Model version")],
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """One version: its manifest facts, metrics per class, activations, and the retrain decision behind it."""
    with _session(db, config) as s:
        info = _version_info(s, version)
    if as_json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    metrics = info["metrics"] or {}
    typer.echo(f"{info['version']}{'  (active)' if info['active'] else ''}  {info['family'] or ''}")
    typer.echo(f"  path: {info['path']}")
    typer.echo(f"  mAP@0.5 {_map50(metrics)} on {metrics.get('split', '-')}")
    for name, v in (metrics.get("per_class") or {}).items():
        ap50 = v.get("ap50")
        typer.echo(f"    {name:<18} AP50 {'-' if ap50 is None else f'{ap50:.3f}'}")
    for a in info["activations"]:
        typer.echo(f"  activated {a['activated_at'][:19]} by {a['actor']} ({a['kind']}): {a['reason'] or ''}")
    run = info["retrain_run"]
    if run is not None:
        typer.echo("")
        typer.echo(format_summary({**(run["summary"] or {}), "status": run["status"], "run_id": run["id"]}))


def _check_loads(version: str, path: str | None) -> None:
    # loading a bundle needs torch (seconds to import): only `activate` checks one
    from inspection.retrain.plan import resolve_bundle_path
    from training.bundle import BundleError, load_bundle

    found = resolve_bundle_path(path)
    if found is None:
        raise fail(f"{version}: bundle folder {path!r} not found; a daemon could not load it")
    try:
        load_bundle(found)
    except (BundleError, OSError, ValueError) as exc:
        raise fail(f"{version}: bundle at {found} does not load: {exc}") from None


@models_app.command("activate")
def activate_command(
    version: Annotated[str, typer.Argument(help="Model version to put on the line (promotion or rollback)")],
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    by: Annotated[str | None, typer.Option("--by", help="Who (recorded)")] = None,
    reason: Annotated[str | None, typer.Option("--reason", "--note", help="Why (recorded)")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Activate a version the retrain gate rejected (needs --reason)")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Load the bundle before activating")
    ] = True,
) -> None:
    """Make VERSION the active model; running daemons swap to it at their next promotion check. Recorded in
    the activation history. A version the gate rejected needs --force and --reason."""
    who = _who(by)
    with _session(db, config) as s:
        row = model_version(s, version)
        if row is None:
            raise fail(f"model version {version!r} is not registered (see steel models list)")
        if check:
            _check_loads(version, row.path)
        rejected = gate_rejected(s, version)
        if rejected is not None and not (force and reason):
            raise fail(
                f"{version} was rejected by retrain run {rejected.id}: {rejected.decision_reason}; "
                "activating it needs --force and --reason"
            )
        activate_model(
            s,
            version,
            promoted_by=who,
            note=reason or "steel models activate",
            kind="manual",
            forced=rejected is not None,
        )
    typer.echo(f"{version} is active (daemons watching the database switch at their next check)")


@models_app.command("history")
def history_command(
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    version: Annotated[str | None, typer.Option("--version", help="Only this version")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Every activation, newest first: when, which version, from which, by whom, by hand or by a run, why."""
    with _session(db, config) as s:
        items = [a.to_dict() for a in activation_history(s, version=version, limit=limit)]
    if as_json:
        sys.stdout.write(json.dumps(items) + "\n")
        return
    for a in items:
        forced = "  FORCED past a gate rejection" if a["forced"] else ""
        typer.echo(
            f"{a['activated_at'][:19]}  {a['previous_version'] or '-'} -> {a['version']}  "
            f"{a['kind']} by {a['actor'] or '-'}: {a['reason'] or ''}{forced}"
        )


@models_app.command("runs")
def runs_command(
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The latest retrain runs with their decisions."""
    with _session(db, config) as s:
        items: list[dict[str, Any]] = [
            {
                "id": r.id,
                "status": r.status,
                "started_at": _iso(r.started_at),
                "finished_at": _iso(r.finished_at),
                "champion": r.champion_version,
                "challenger": r.challenger_version,
                "last_review_id": r.last_review_id,
                "reason": r.decision_reason,
            }
            for r in recent_retrain_runs(s, limit)
        ]
    if as_json:
        sys.stdout.write(json.dumps(items) + "\n")
        return
    for it in items:
        typer.echo(
            f"run {it['id']:>4}  {it['status']:<9} {(it['started_at'] or '')[:19]}  "
            f"{it['champion'] or '-'} -> {it['challenger'] or '-'}  {it['reason'] or ''}"
        )


def _snapshot_decision(
    action: str, run_id: int, reason: str, by: str | None, db: str | None, config: Path
) -> None:
    who = _who(by)
    repo = _repository(db, config)
    try:
        with repo.transaction() as s:
            record_snapshot_decision(s, run_id, action=action, by=who, reason=reason)
    except (LookupError, ValueError) as exc:
        raise fail(str(exc)) from None
    finally:
        repo.dispose()
    verb = "is replayed" if action == "accept" else "is no longer replayed"
    typer.echo(f"run {run_id}'s snapshot {verb} in later training sets")


RunArg = Annotated[int, typer.Argument(help="Retrain run id (steel models runs)")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded)")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who (recorded)")]


@snapshot_app.command("drop")
def snapshot_drop(
    run_id: RunArg,
    reason: ReasonOption,
    by: ByOption = None,
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Keep run RUN_ID's snapshot (and the reviews in it) out of every later training set."""
    _snapshot_decision("drop", run_id, reason, by, db, config)


@snapshot_app.command("accept")
def snapshot_accept(
    run_id: RunArg,
    reason: ReasonOption,
    by: ByOption = None,
    db: DbOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Replay run RUN_ID's snapshot in later training sets although its challenger was rejected."""
    _snapshot_decision("accept", run_id, reason, by, db, config)
