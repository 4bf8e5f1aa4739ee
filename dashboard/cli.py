"""``steel dashboard``: start the Streamlit QA dashboard on the daemon's database.

Checks the config (a bad file fails here with the key that is wrong), then *replaces itself* (exec)
with ``python -m streamlit run dashboard/app.py --server.port N --server.address 127.0.0.1 ... -- --db
URL``: the process a service manager started is the server, so ``kill -TERM`` (or ``-KILL``) stops it
and no orphan keeps the port. It listens on 127.0.0.1 unless ``--address`` opens it up (with a
warning when login is off). ``steel dashboard-hash-password`` prints a hash for the config's
``auth.users``. Mounted by ``steel.cli``; ``python -m dashboard.cli`` runs it alone.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from dashboard.auth import hash_password
from datasets.settings import ConfigError

APP_PATH = Path(__file__).resolve().with_name("app.py")
DEFAULT_PORT = 8501
DEFAULT_ADDRESS = "127.0.0.1"  # this machine only; `--address 0.0.0.0` opens it to the network

app = typer.Typer(help="QA dashboard", no_args_is_help=True, add_completion=False)


def streamlit_command(
    *, db_url: str, port: int, config: Path | None = None, address: str = DEFAULT_ADDRESS
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
    cmd += ["--server.address", address, "--"]
    env: dict[str, str] = {}

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
        str,
        typer.Option(
            "--address",
            help="Interface to listen on: 127.0.0.1 (this machine only) unless opened up, e.g. 0.0.0.0.",
        ),
    ] = DEFAULT_ADDRESS,
    print_command: Annotated[
        bool, typer.Option("--print-command", help="Print the command instead of running it.")
    ] = False,
) -> None:
    """Open the QA dashboard (Streamlit) on the inspection database."""
    from dashboard.config import load_dashboard_config  # pandas (the plant clock): ~0.4 s, this command only

    try:
        cfg = load_dashboard_config(config, db_url=db)
        cmd, env = streamlit_command(db_url=cfg.db_url, port=port, config=config, address=address)
    except (ConfigError, ValueError) as exc:  # a bad config, or a --db that is no database URL
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not cfg.auth.enabled and not is_local_address(address):
        typer.echo(
            f"warning: login is off and the dashboard listens on {address}: anyone who reaches port {port} "
            "uses it without signing in (turn on auth in the config, or keep the default 127.0.0.1)",
            err=True,
        )
    if print_command:
        typer.echo(subprocess.list2cmdline(cmd))
        return
    host = "localhost" if is_local_address(address) else address
    typer.echo(f"Dashboard on http://{host}:{port}/ (Ctrl+C stops it)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: signals reach the server itself and nothing is left behind when it stops
    os.execve(cmd[0], cmd, {**os.environ, **env})


def is_local_address(address: str) -> bool:
    """Whether ``address`` (an IP or host name) is this machine's loopback, unreachable from others."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable


@app.command("dashboard-hash-password")
def hash_password_command() -> None:
    """Print a password hash for the dashboard config's ``auth.users`` (the password is prompted).

    The prompts go to the terminal (or stderr), so ``steel dashboard-hash-password > hash.txt`` keeps the
    hash alone on stdout.
    """
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    typer.echo(hash_password(password))  # click re-prompts on an empty answer and aborts at end of input


if __name__ == "__main__":
    app()
