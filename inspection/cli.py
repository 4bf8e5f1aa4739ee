"""The ``steel`` commands of the layers up to the line: data, training, inspect, retrain, models.

The ``steel`` entry point (:mod:`steel.cli`) adds the dashboard's commands on top; this module must not
import ``dashboard`` (it stands above inspection). ``python -m inspection.cli`` runs these commands
alone (torchrun starts ``-m inspection.cli train``). Heavy modules (torch, the daemon) are imported
inside the commands, so ``steel data audit`` starts fast."""

from __future__ import annotations

import typer

from datasets.cli import app as data_app
from inspection.calibrate_cli import calibrate_command
from inspection.inspect_cli import inspect_command
from inspection.retrain.cli import models_app, retrain_command
from training.classical.cli import app as classic_app
from training.cli import app as training_app

app = typer.Typer(help="Steel-surface defect inspection", no_args_is_help=True, add_completion=False)
app.add_typer(data_app, name="data", help="Dataset tools: audit, split, background")
app.registered_commands.extend(training_app.registered_commands)
app.command("inspect")(inspect_command)
app.command("calibrate")(calibrate_command)
app.command("retrain")(retrain_command)
app.add_typer(models_app, name="models", help="Model registry: list, show, activate (promote or roll back)")
app.add_typer(classic_app, name="classic", help="Classical texture baseline: train, eval, predict")

if __name__ == "__main__":
    app()
