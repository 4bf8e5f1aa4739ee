"""``steel retrain`` (and, from :mod:`.models_cli`, ``steel models ...``).

Register in the ``steel`` app with ``app.command("retrain")(retrain_command)`` and
``app.add_typer(models_app, name="models")``. Heavy modules (torch) load inside the commands.

Exit codes, for cron and systemd timers (README, "Retraining"):

====  ==========================================================================
0     promoted: the challenger is the active model now
3     rejected: the challenger failed the gate; the champion stays on the line
4     nothing to do: too few new reviews since the last finished run
1     failed: an error (recorded as a failed run when one was open); reviews stay unused
2     bad config or usage
75    busy: another ``steel retrain`` holds the work folder's lock (EX_TEMPFAIL: try again later)
====  ==========================================================================
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from datasets.settings import ConfigError
from inspection.retrain.config import RetrainConfig, load_retrain_config
from inspection.retrain.models_cli import DEFAULT_CONFIG, database_error, fail, models_app

EXIT_PROMOTED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_NOTHING_TO_DO = 4
EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the lock; cron can simply try again later
EXIT_CODES = {
    "promoted": EXIT_PROMOTED,
    "rejected": EXIT_REJECTED,
    "nothing-to-do": EXIT_NOTHING_TO_DO,
    "failed": EXIT_FAILED,
}

__all__ = ["EXIT_CODES", "models_app", "retrain_command"]


def _dry_run(cfg: RetrainConfig, as_json: bool) -> None:
    """Print what the next pass would do (``--dry-run``); its errors are one line, exit 1."""
    from inspection.retrain.status import retrain_status  # reads the recipe: torch, seconds to import

    try:
        status = retrain_status(cfg)
    except SQLAlchemyError as exc:
        raise fail(database_error(exc), EXIT_FAILED) from None
    except (ValueError, OSError) as exc:  # a missing split file, an unreadable annotation folder...
        raise fail(f"{type(exc).__name__}: {exc}", EXIT_FAILED) from None
    typer.echo(json.dumps(status, indent=None if as_json else 2))


def retrain_command(
    config: Annotated[Path, typer.Option("--config", help="Retraining config (YAML)")] = DEFAULT_CONFIG,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: key.path=value (repeatable)")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Close an interrupted run as failed and start a new one")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Say what would be done, on how many images, about how long; change nothing"
        ),
    ] = False,
    validate_config: Annotated[
        bool, typer.Option("--validate-config", help="Check the config and exit")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run's summary as one JSON object")
    ] = False,
) -> None:
    """Retrain on operators' reviews: collect, fine-tune a challenger, compare with the champion, promote or
    reject, record it. Idempotent: run it from cron or a systemd timer; a killed run resumes. Exit codes:
    0 promoted, 3 rejected, 4 nothing to do, 1 failed, 2 bad config, 75 another run holds the lock."""
    try:
        cfg = load_retrain_config(config, set_ or [])
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if validate_config:
        typer.echo(f"{config}: ok")
        return
    if dry_run:
        _dry_run(cfg, as_json)
        return
    from inspection.retrain.job import RetrainBusyError, run_retrain  # training: torch, seconds to import

    try:
        # Progress and the summary on stdout (cron mails it); on stderr when stdout carries the JSON.
        outcome = run_retrain(cfg, restart=restart, log=lambda line: typer.echo(line, err=as_json))
    except RetrainBusyError as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except SQLAlchemyError as exc:  # the database down or unreachable
        raise fail(database_error(exc), EXIT_FAILED) from None
    except (ValueError, OSError, RuntimeError) as exc:  # recorded as a failed run when one was open
        raise fail(f"{type(exc).__name__}: {exc}", EXIT_FAILED) from None
    if as_json:
        payload = {
            "status": outcome.status,
            "run_id": outcome.run_id,
            "challenger": outcome.challenger_version,
            "reason": outcome.reason,
            "summary": outcome.summary,
        }
        sys.stdout.write(json.dumps(payload) + "\n")
    raise typer.Exit(EXIT_CODES[outcome.status])
