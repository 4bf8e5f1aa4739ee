"""What people type into ``steel models`` and ``steel retrain`` is checked before it reaches the database.

Who decided is an audit column of 100 characters: a longer ``--by`` is a usage error on every backend
(PostgreSQL refused the row with a DataError traceback; SQLite stored it whole), and nothing is recorded.
A database URL that does not parse is a usage error naming it, not an ArgumentError traceback."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from typer import Typer
from typer.testing import CliRunner

from inspection.retrain.cli import models_app, retrain_command
from inspection.storage.db import upgrade
from inspection.storage.model_registry import register_model_version
from inspection.storage.repository import Repository
from inspection.storage.reviews import finish_retrain_run, start_retrain_run
from inspection.storage.schema import ModelActivation, SnapshotDecision

TOO_LONG = "operator " * 12  # 108 characters


@pytest.fixture
def finished_run(db_url: str) -> int:
    upgrade(db_url)
    repo = Repository(db_url)
    try:
        with repo.transaction() as s:
            register_model_version(s, {"version": "v1", "class_names": ["crazing", "patches"]}, None)
            run_id = start_retrain_run(s).id
            finish_retrain_run(s, run_id, status="promoted", decision_reason="better")
    finally:
        repo.dispose()
    return run_id


def _steel_models(*args: str) -> tuple[int, str]:
    cli = Typer()
    cli.add_typer(models_app, name="models")
    cli.command("noop")(lambda: None)
    result = CliRunner().invoke(cli, ["models", *args])
    return result.exit_code, result.output


def _rows(db_url: str) -> tuple[int, int]:
    repo = Repository(db_url)
    try:
        with repo.transaction() as s:
            counts = (
                s.scalar(select(func.count()).select_from(SnapshotDecision)),
                s.scalar(select(func.count()).select_from(ModelActivation)),
            )
    finally:
        repo.dispose()
    return int(counts[0] or 0), int(counts[1] or 0)


def test_a_snapshot_decision_by_a_name_longer_than_the_audit_column_is_a_usage_error(
    db_url: str, finished_run: int
) -> None:
    code, output = _steel_models(
        "snapshot", "drop", str(finished_run), "--reason", "bad labels", "--by", TOO_LONG, "--db", db_url
    )
    assert code == 2 and "error: --by" in output and "100 characters" in output, output
    assert _rows(db_url) == (0, 0)
    code, output = _steel_models(
        "snapshot", "drop", str(finished_run), "--reason", "bad labels", "--by", "qa", "--db", db_url
    )
    assert code == 0, output
    assert _rows(db_url) == (1, 0)


def test_an_activation_by_a_name_longer_than_the_audit_column_is_a_usage_error(
    db_url: str, finished_run: int
) -> None:
    code, output = _steel_models("activate", "v1", "--no-check", "--by", TOO_LONG, "--db", db_url)
    assert code == 2 and "error: --by" in output and "100 characters" in output, output
    assert _rows(db_url) == (0, 0)
    code, output = _steel_models("activate", "v1", "--no-check", "--by", "qa", "--db", db_url)
    assert code == 0, output
    assert _rows(db_url) == (0, 1)


@pytest.mark.parametrize(
    "args",
    [
        ["models", "list", "--db", "not-a-url"],
        ["models", "history", "--db", "not-a-url"],
        ["retrain", "--set", "db=not-a-url", "--dry-run"],
        ["retrain", "--set", "db=not-a-url"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_database_url_that_does_not_parse_is_a_usage_error_naming_it(args: list[str]) -> None:
    cli = Typer()
    cli.add_typer(models_app, name="models")
    cli.command("retrain")(retrain_command)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "error:" in result.output and "db" in result.output and "not-a-url" in result.output


UNREACHABLE = {
    "sqlite under a missing /proc folder": "sqlite:////proc/no-such-folder/inspection.db",
    "postgresql with nothing listening": "postgresql+psycopg://qa:hunter2@127.0.0.1:1/inspection",
}


@pytest.mark.parametrize("url", UNREACHABLE.values(), ids=UNREACHABLE.keys())
@pytest.mark.parametrize(
    "args", [["models", "list"], ["models", "runs"], ["retrain", "--dry-run"], ["retrain"]], ids=" ".join
)
def test_a_database_that_cannot_be_opened_is_one_error_line_without_its_password(
    url: str, args: list[str]
) -> None:
    cli = Typer()
    cli.add_typer(models_app, name="models")
    cli.command("retrain")(retrain_command)
    option = ["--db", url] if args[0] == "models" else ["--set", f"db={url}"]
    result = CliRunner().invoke(cli, [*args, *option])
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) <= 2, result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize("command", ["history", "runs"])
@pytest.mark.parametrize("limit", ["0", "-1"])
def test_a_limit_below_one_is_a_usage_error(db_url: str, finished_run: int, command: str, limit: str) -> None:
    """PostgreSQL refused ``LIMIT -1`` with a traceback and SQLite read it as no limit at all."""
    code, output = _steel_models(command, "--limit", limit, "--db", db_url)
    assert code == 2 and "--limit" in output, output
