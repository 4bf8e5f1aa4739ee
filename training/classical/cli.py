"""``steel classic train | eval | predict``: the classical texture baseline's command line.

Follows ``steel eval``: ``--json`` prints one object on stdout; errors are one ``error:`` line on stderr
with exit code 1 (2 for a bad option); progress bars only when stderr is a terminal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import JsonValue

from datasets.texture.settings import FeatureSettings
from training.classical.show import print_result
from training.classical.tiles import TileRule

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Classical texture baseline (no deep learning)"
)
DEFAULT_SPLIT = Path("configs/splits/neu-det-dev.json")


def _fail(message: str, code: int = 1) -> typer.Exit:
    # An AnnotationError's text is a Problem, which already starts with its severity ("error: ...").
    typer.echo(message if message.startswith("error: ") else f"error: {message}", err=True)
    return typer.Exit(code)


def _emit(result: dict[str, JsonValue], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    print_result(result)


@app.command("train")
def train_command(
    data: Annotated[Path, typer.Option("--data", help="Annotations (any supported format)")],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write, e.g. models/neu-classic")],
    images: Annotated[Path | None, typer.Option("--images", help="Image folder")] = None,
    split: Annotated[
        Path, typer.Option("--split", help="Train on its train side, measure on val")
    ] = DEFAULT_SPLIT,
    task: Annotated[str, typer.Option("--task", help="image-class or defect-tile")] = "image-class",
    classifier: Annotated[str, typer.Option("--classifier", help="logistic-regression or linear-svm")] = (
        "logistic-regression"
    ),
    c: Annotated[float, typer.Option("--c", help="Inverse regularisation strength")] = 1.0,
    version: Annotated[
        str | None, typer.Option("--version", help="Bundle version (default: folder name)")
    ] = None,
    format: Annotated[str, typer.Option("--format")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Fit scaler + linear classifier on texture features; report val accuracy and the group ablation."""
    from training.classical.run import DataSource, train  # scikit-learn and scikit-image: ~2 s to import

    if task not in ("image-class", "defect-tile"):
        raise _fail(f"--task: {task!r} is not image-class or defect-tile", 2)
    if classifier not in ("logistic-regression", "linear-svm"):
        raise _fail(f"--classifier: {classifier!r} is not logistic-regression or linear-svm", 2)
    if c <= 0:
        raise _fail(f"--c: {c} must be > 0", 2)
    try:
        result = train(
            DataSource(data, images, split, format),
            out=out,
            task=task,  # type: ignore[arg-type]  # checked above
            settings=FeatureSettings(),
            rule=TileRule(),
            kind=classifier,  # type: ignore[arg-type]  # checked above
            c=c,
            version=version or out.name,
        )
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    _emit(result, as_json)


@app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Option("--model", help="Classical bundle folder")],
    data: Annotated[Path, typer.Option("--data", help="Annotations (any supported format)")],
    images: Annotated[Path | None, typer.Option("--images", help="Image folder")] = None,
    split: Annotated[
        Path | None, typer.Option("--split", help="Score only the val side of this split")
    ] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Write confusion_matrix.png here")] = None,
    format: Annotated[str, typer.Option("--format")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix and per-group reliance of a bundle."""
    from training.classical.run import DataSource, evaluate  # scikit-learn and scikit-image: ~2 s

    try:
        result = evaluate(DataSource(data, images, split, format), model_dir=model, plots=plots)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    _emit(result, as_json)


@app.command("predict")
def predict_command(
    images: Annotated[list[Path], typer.Argument(help="Image or crop files")],
    model: Annotated[Path, typer.Option("--model", help="Classical bundle folder")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Class, scores and which feature groups pushed the decision, for each image."""
    from training.classical.run import predict  # scikit-learn and scikit-image: ~2 s to import

    try:
        result = predict(model, images)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    _emit(result, as_json)
