"""The ``steel`` command: every layer's sub-commands under one entry point.

It lives in its own top-level package because it is the one module allowed to stand above all the
others: ``inspection.cli`` holds the commands of datasets, training and the line (it may import
those layers), and the dashboard's commands are added here, so no module imports a layer above its
own (``inspection`` never imports ``dashboard``). Heavy modules (torch, the daemon, Streamlit) are
imported inside the commands, so ``steel data audit`` starts fast.
"""

from __future__ import annotations

import typer

from dashboard.cli import app as dashboard_app
from inspection.cli import app as inspection_app

app = typer.Typer(help="Steel-surface defect inspection", no_args_is_help=True, add_completion=False)
for part in (inspection_app, dashboard_app):
    app.registered_commands.extend(part.registered_commands)
    app.registered_groups.extend(part.registered_groups)

if __name__ == "__main__":
    app()
