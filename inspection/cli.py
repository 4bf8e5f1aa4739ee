"""The ``steel`` command: one entry point, sub-commands from each package (imported lazily so
``steel data audit`` never pays for torch)."""

from __future__ import annotations

import typer

from datasets.cli import app as data_app
from training.cli import app as training_app

app = typer.Typer(help="Steel-surface defect inspection", no_args_is_help=True, add_completion=False)
app.add_typer(data_app, name="data", help="Dataset tools: audit, split")
app.registered_commands.extend(training_app.registered_commands)

if __name__ == "__main__":
    app()
