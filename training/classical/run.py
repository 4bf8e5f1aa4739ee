"""What ``steel classic train|eval|predict`` do, as plain functions returning JSON-ready dicts."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

from pydantic import JsonValue, ValidationError

from datasets.model import AnnotatedSet
from datasets.readers import read_dataset
from datasets.settings import format_validation_error
from datasets.split import apply_split, read_split
from datasets.texture.bundle import ClassicBundle, Task, load_classic_bundle, save_classic_bundle
from datasets.texture.explain import explain_features
from datasets.texture.features import extract
from datasets.texture.linear import ClassifierKind
from datasets.texture.settings import FeatureSettings
from training.classical.fit import ablation, fit_linear, label_indices, reliance
from training.classical.metrics import classification_report, plot_confusion
from training.classical.samples import feature_matrix, make_samples, read_gray, task_classes
from training.classical.tiles import TileRule
from training.provenance import code_version

CONFUSION_PNG = "confusion_matrix.png"
LIBRARIES = ("numpy", "opencv-python-headless", "scikit-image", "scikit-learn")


def provenance() -> dict[str, JsonValue]:
    """The code commit and library versions that made a bundle (what an auditor needs to reproduce it)."""
    return {"code_version": code_version(), "libraries": {name: package_version(name) for name in LIBRARIES}}


@dataclass(frozen=True)
class DataSource:
    """Where labelled images come from: annotations, their image folder, an optional split file."""

    data: Path
    images: Path | None = None
    split: Path | None = None
    format: str = "auto"


def read_sides(source: DataSource, class_names: tuple[str, ...] | None) -> tuple[AnnotatedSet, AnnotatedSet]:
    """``(train, val)``: the split's two sides, or ``(everything, everything)`` without a split file."""
    aset = read_dataset(source.data, format=source.format, images_dir=source.images, class_names=class_names)
    errors = [p for p in aset.problems if p.severity == "error"]
    if errors:
        raise ValueError(f"{len(errors)} annotation errors, e.g. {errors[0]}")
    if source.split is None:
        return aset, aset
    return apply_split(aset, read_split(source.split))


def train(
    source: DataSource,
    *,
    out: Path,
    task: Task,
    settings: FeatureSettings,
    rule: TileRule,
    kind: ClassifierKind,
    c: float,
    version: str,
) -> dict[str, JsonValue]:
    """Fit on the split's train side, measure on its val side (with the ablation), write the bundle."""
    if source.split is None:
        raise ValueError("--split is required: the ablation and metrics are measured on its val side")
    train_set, val_set = read_sides(source, None)
    classes = task_classes(task, train_set)
    sides = []
    for name, aset in (("train", train_set), ("val", val_set)):
        samples = make_samples(aset, task, rule)
        targets = label_indices([s.label for s in samples], classes)
        sides.append((feature_matrix(samples, settings, desc=f"{name} features"), targets))
    model = fit_linear(*sides[0], settings=settings, class_names=classes, kind=kind, c=c)
    val_predicted = model.predict(sides[1][0])
    metrics = classification_report(sides[1][1], val_predicted, classes)
    refits = ablation(sides[0], sides[1], settings=settings, class_names=classes, kind=kind, c=c)
    report: dict[str, JsonValue] = {
        "metrics": {"split": "val", "samples": len(sides[1][1]), "images": len(val_set.images), **metrics},
        "ablation": {g: dict(row) for g, row in refits.items()},  # as JSON values (dict is invariant)
        "reliance": dict(reliance(model, *sides[1])),
        "split": {"file": str(source.split), "split_sha256": read_split(source.split).split_sha256},
        "training": {
            "classifier": kind,
            "C": c,
            "samples": len(sides[0][1]),
            "images": len(train_set.images),
            **provenance(),
        },
    }
    if task == "defect-tile":
        report["tile_rule"] = rule.model_dump(mode="json")
    save_classic_bundle(out, model, task=task, version=version, report=report)
    plot_confusion(sides[1][1], val_predicted, classes, out / CONFUSION_PNG, title=f"{version} (val)")
    return {"model": version, "bundle": str(out), "task": task, **report}


def tile_rule_of(bundle: ClassicBundle) -> TileRule:
    try:
        return TileRule.model_validate(bundle.manifest.report.get("tile_rule") or {})
    except ValidationError as exc:
        raise ValueError(
            f"{bundle.path}/manifest.json: report.tile_rule:\n{format_validation_error(exc)}"
        ) from None


def evaluate(source: DataSource, *, model_dir: Path, plots: Path | None = None) -> dict[str, JsonValue]:
    """Accuracy, per-class figures and confusion matrix on the val side (or every image without a split)."""
    bundle = load_classic_bundle(model_dir)
    task = bundle.manifest.task
    names = bundle.model.class_names if task == "image-class" else None
    _, val_set = read_sides(source, names)
    samples = make_samples(val_set, task, tile_rule_of(bundle) if task == "defect-tile" else None)
    targets = label_indices([s.label for s in samples], bundle.model.class_names)
    features = feature_matrix(samples, bundle.model.settings, desc="features")
    predicted = bundle.model.predict(features)
    metrics = classification_report(targets, predicted, bundle.model.class_names)
    if plots is not None:
        plot_confusion(
            targets,
            predicted,
            bundle.model.class_names,
            plots / CONFUSION_PNG,
            title=bundle.version,
        )
    return {
        "model": bundle.version,
        "task": task,
        "images": len(val_set.images),
        "samples": len(samples),
        **metrics,
        "reliance": dict(reliance(bundle.model, features, targets)),  # as JSON values
    }


def predict(model_dir: Path, images: list[Path]) -> dict[str, JsonValue]:
    """Class, scores and the per-group explanation for each image (each image is one crop)."""
    bundle = load_classic_bundle(model_dir)
    out: list[JsonValue] = []
    for path in images:
        features = extract(read_gray(path), bundle.model.settings)
        why = explain_features(features, bundle.model)
        out.append(
            {
                "image": str(path),
                "class": why.predicted,
                "score": round(why.scores[why.predicted], 4),
                "scores": {k: round(v, 4) for k, v in why.scores.items()},
                "runner_up": why.runner_up,
                "margin_by_group": {k: round(v, 4) for k, v in why.margin_by_group.items()},
            }
        )
    return {"model": bundle.version, "task": bundle.manifest.task, "images": out}
