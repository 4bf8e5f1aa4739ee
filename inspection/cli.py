"""The ``steel`` command: one entry point, sub-commands from each package. Heavy modules (torch, the
daemon, Streamlit) are imported inside the commands, so ``steel data audit`` starts fast."""

from __future__ import annotations

import typer

from dashboard.cli import app as dashboard_app
from datasets.cli import app as data_app
from inspection.calibrate_cli import calibrate_command
from inspection.inspect_cli import inspect_command
from inspection.retrain.cli import models_app, retrain_command
from training.cli import app as training_app

app = typer.Typer(help="Steel-surface defect inspection", no_args_is_help=True, add_completion=False)
app.add_typer(data_app, name="data", help="Dataset tools: audit, split, background")
app.registered_commands.extend(training_app.registered_commands)
app.command("inspect")(inspect_command)
app.command("calibrate")(calibrate_command)
app.registered_commands.extend(dashboard_app.registered_commands)
app.command("retrain")(retrain_command)
app.add_typer(models_app, name="models", help="Model registry: list, show, activate (promote or roll back)")

if __name__ == "__main__":
    app()
