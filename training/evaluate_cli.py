"""What ``steel eval`` does: read a labelled set, score it with a bundle, evaluate with COCO metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from datasets.model import AnnotatedSet
from datasets.readers import read_dataset
from datasets.split import apply_split, read_split
from training.bundle import load_bundle
from training.evaluation import EvalResult, GroundTruth, Prediction, evaluate, ground_truth_from_records
from training.inference import Predictor, read_image
from training.quantize import calibration_records, quantize_int8

CALIBRATION_IMAGES = 128  # training images for int8 calibration, spread evenly over the training side


@dataclass(frozen=True)
class Scored:
    """A labelled set scored with a bundle: every detection down to the model's own floor."""

    predictor: Predictor
    gts: list[GroundTruth]
    preds: list[Prediction]
    data: str  # which images: the annotations path and, with a split, its file and hash


@dataclass(frozen=True)
class BackendOptions:
    """Which runtime scores the set: ``backend`` as in ``detector.backend``; ``int8`` the quantised ONNX
    export (made on first use, calibrated on ``calibration_images`` images of the split's training side)."""

    backend: str = "auto"
    int8: bool = False
    calibration_images: int = CALIBRATION_IMAGES


def read_labelled(data: Path, *, format: str, images: Path | None, class_names: list[str]) -> AnnotatedSet:
    """The annotated set at ``data``; ValueError naming the first error when any annotation has one."""
    aset = read_dataset(data, format=format, images_dir=images, class_names=class_names)
    errors = [p for p in aset.problems if p.severity == "error"]
    if errors:
        raise ValueError(f"{len(errors)} annotation errors, e.g. {errors[0]}")
    return aset


def score_dataset(
    *,
    model: Path,
    data: Path,
    format: str = "auto",
    images: Path | None = None,
    split: Path | None = None,
    device: str = "auto",
    show_progress: bool = True,
    batch_size: int = 32,
    runtime: BackendOptions = BackendOptions(),
) -> Scored:
    """Read the labelled set (the val side of ``split`` when given) and score it with the bundle."""
    bundle = load_bundle(model)
    aset = read_labelled(data, format=format, images=images, class_names=bundle.class_names)
    records = train_records = aset.images
    described = str(data)
    if split is not None:
        chosen = read_split(split)
        train, val = apply_split(aset, chosen)
        records, train_records = val.images, train.images
        described = f"{data} (val side of {split.name}, split_sha256 {chosen.split_sha256[:12]})"
    if runtime.int8:
        calibration = calibration_records(train_records, runtime.calibration_images)
        quantize_int8(bundle, [read_image(str(r.path)) for r in calibration])
    predictor = Predictor(
        bundle,
        device=device,
        score_threshold=0.0,
        batch_size=batch_size,
        backend=runtime.backend,
        int8=runtime.int8,
    )
    preds: list[Prediction] = []
    for start in tqdm(
        range(0, len(records), batch_size), desc="scoring", disable=not show_progress, leave=False
    ):
        chunk = records[start : start + batch_size]
        for det in predictor([read_image(str(r.path)) for r in chunk]):
            preds.append(Prediction(det.xyxy, det.scores, det.class_ids))
    gts = ground_truth_from_records(records, predictor.class_names)
    return Scored(predictor=predictor, gts=gts, preds=preds, data=described)


def evaluate_at_bundle_point(scored: Scored, conf: float | None = None) -> EvalResult:
    """Evaluate at ``conf`` for every class when given (it wins), else at the bundle's operating point."""
    names = scored.predictor.class_names
    if conf is not None:
        return evaluate(scored.gts, scored.preds, names, conf_threshold=conf)
    bundle = scored.predictor.bundle
    return evaluate(
        scored.gts,
        scored.preds,
        names,
        conf_threshold=bundle.score_threshold,
        per_class_thresholds=bundle.per_class_thresholds,
    )


def run_eval(
    *,
    model: Path,
    data: Path,
    format: str = "auto",
    images: Path | None = None,
    split: Path | None = None,
    conf: float | None = None,
    device: str = "auto",
    show_progress: bool = True,
    batch_size: int = 32,
    runtime: BackendOptions = BackendOptions(),
) -> EvalResult:
    scored = score_dataset(
        model=model,
        data=data,
        format=format,
        images=images,
        split=split,
        device=device,
        show_progress=show_progress,
        batch_size=batch_size,
        runtime=runtime,
    )
    return evaluate_at_bundle_point(scored, conf)


def print_eval(result: EvalResult) -> None:
    console = Console()
    line = result.line
    thresholds = set(result.operating_point.values())
    at = f"conf {result.conf_threshold}" if len(thresholds) <= 1 else "per-class operating point"
    console.print(
        f"[bold]{result.images} images[/]  mAP@0.5 [bold]{result.map50:.4f}[/]  "
        f"mAP@0.5:0.95 {result.map50_95:.4f}  P {result.precision:.3f} R {result.recall:.3f} "
        f"F1 {result.f1:.3f} @ {at}  (best F1 {result.best_f1:.3f} @ {result.best_conf:.3f})"
    )
    console.print(
        f"line: reject recall [bold]{_fmt(line.reject_recall)}[/] "
        f"({line.rejected_defective_images}/{line.defective_images} defective images)  "
        f"stray {line.stray_per_100_images:.1f} per 100 images ({line.stray_detections} boxes)"
    )
    table = Table("class", "boxes", "AP50", "AP50:95", "threshold", "images", "reject recall")
    for name, v in result.per_class.items():
        table.add_row(
            name,
            str(v["gt"]),
            _fmt(v["ap50"]),
            _fmt(v["ap"]),
            f"{result.operating_point[name]:.3f}",
            str(line.defective_images_per_class[name]),
            _fmt(line.reject_recall_per_class[name]),
        )
    console.print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"  # None and NaN print as "-"
