"""``steel dashboard``: start the Streamlit QA dashboard on the daemon's database.

Runs ``python -m streamlit run dashboard/app.py --server.port N --server.headless true -- --db URL``
in a child process and exits with its status. The config is checked first, so a bad file fails here
with the key that is wrong. ``steel dashboard-hash-password`` prints a hash for the config's
``auth.users``. Mounted by ``steel.cli``; ``python -m dashboard.cli`` runs it alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

APP_PATH = Path(__file__).resolve().with_name("app.py")
DEFAULT_PORT = 8501

app = typer.Typer(help="QA dashboard", no_args_is_help=True, add_completion=False)


def streamlit_command(
    *, db_url: str, port: int, config: Path | None = None, address: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment that start the dashboard.

    A URL with a password travels in ``STEEL_DASHBOARD_DB`` instead of the command line, where any
    user of the machine could read it (``ps``).
    """
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    if address:
        cmd += ["--server.address", address]
    cmd.append("--")
    env: dict[str, str] = {}
    from sqlalchemy.engine import make_url

    if make_url(db_url).password:
        env["STEEL_DASHBOARD_DB"] = db_url
    else:
        cmd += ["--db", db_url]
    if config is not None:
        cmd += ["--config", str(config.resolve())]
    return cmd, env


@app.command("dashboard")
def dashboard_command(
    db: Annotated[
        str | None,
        typer.Option("--db", help="SQLAlchemy URL (default: the config's, sqlite:///var/inspection.db)."),
    ] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port.")] = DEFAULT_PORT,
    config: Annotated[
        Path | None, typer.Option("--config", exists=True, dir_okay=False, help="Dashboard YAML config.")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Interface to listen on (Streamlit's default: all).")
    ] = None,
    print_command: Annotated[
        bool, typer.Option("--print-command", help="Print the command instead of running it.")
    ] = False,
) -> None:
    """Open the QA dashboard (Streamlit) on the inspection database."""
    from dashboard.config import load_dashboard_config
    from datasets.settings import ConfigError

    try:
        cfg = load_dashboard_config(config, db_url=db)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    cmd, env = streamlit_command(db_url=cfg.db_url, port=port, config=config, address=address)
    if print_command:
        typer.echo(subprocess.list2cmdline(cmd))
        return
    typer.echo(f"Dashboard on http://localhost:{port}/ (Ctrl+C stops it)", err=True)
    try:
        code = subprocess.call(cmd, env={**os.environ, **env})
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


@app.command("dashboard-hash-password")
def hash_password_command() -> None:
    """Print a password hash for the dashboard config's ``auth.users`` (the password is prompted).

    The prompts go to the terminal (or stderr), so ``steel dashboard-hash-password > hash.txt`` keeps the
    hash alone on stdout.
    """
    from dashboard.auth import hash_password

    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    typer.echo(hash_password(password))  # click re-prompts on an empty answer and aborts at end of input


if __name__ == "__main__":
    app()
