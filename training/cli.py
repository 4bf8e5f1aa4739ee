"""``steel train | pretrain | eval | calibrate-thresholds | pseudo-label | predict | export | bundle-fp16``:
training's command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, TypedDict

import typer
from pydantic import ValidationError

from datasets.settings import ConfigError, load_config
from training.operating_point import CalibrationConfig
from training.plots import plot_confusion_matrix, plot_pr_curves

app = typer.Typer(add_completion=False)
BACKEND_HELP = "auto | torch | onnxruntime (auto: ONNX Runtime for YOLO when installed, else torch)"
INT8_HELP = "onnxruntime's int8 export (made on first use, calibrated on the split's training images)"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Argument(help="Training recipe (YAML), e.g. configs/train/yolo_n.yaml")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: key.path=value (repeatable)")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from out_dir/last.pt exactly")] = False,
    validate_config: Annotated[
        bool, typer.Option("--validate-config", help="Check the config and exit")
    ] = False,
) -> None:
    """Train a detector; runs the same under `torchrun --nproc_per_node=N` (DistributedDataParallel)."""
    # training.config and the trainer load torch (seconds): only `steel train` needs them
    from training.config import TrainConfig

    try:
        cfg = load_config(config, TrainConfig, set_ or [])
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    if validate_config:
        typer.echo(f"{config}: ok")
        return
    from training.trainer import fit  # torch (see above)

    result = fit(cfg, resume=resume)
    typer.echo(
        f"best val mAP@0.5 {result.best_map50:.4f} after {result.epochs_run} epochs; "
        f"bundle: {result.bundle_dir}"
    )


@app.command("pretrain")
def pretrain_command(
    config: Annotated[
        Path, typer.Argument(help="Pretraining config (YAML), e.g. configs/pretrain/yolo_n.yaml")
    ],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: key.path=value (repeatable)")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from out_dir/last.pt exactly")] = False,
) -> None:
    """Masked-image pretraining of the YOLO backbone on the split's training images (no labels); start a
    detector from it with `--set model.yolo.weights=OUT/backbone.safetensors`."""
    from training.pretrain.run import BACKBONE_FILE, PretrainConfig, pretrain  # torch: this command only

    try:
        cfg = load_config(config, PretrainConfig, set_ or [])
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    try:
        result = pretrain(cfg, resume=resume)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(
        f"masked L1 {result.losses[-1]:.4f} after {len(result.losses)} epochs; "
        f"{result.out_dir / BACKBONE_FILE}"
    )


@app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Option("--model", help="Model bundle folder")],
    data: Annotated[Path, typer.Option("--data", help="Annotations (any supported format)")],
    format: Annotated[str, typer.Option("--format")] = "auto",
    images: Annotated[Path | None, typer.Option("--images", help="Image folder")] = None,
    split: Annotated[
        Path | None, typer.Option("--split", help="Score only the val side of this split")
    ] = None,
    conf: Annotated[
        float | None, typer.Option("--conf", help="Confidence for P/R/F1 (default: bundle's)")
    ] = None,
    plots: Annotated[
        Path | None, typer.Option("--plots", help="Write PR curves + confusion matrix here")
    ] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)] = "auto",
    int8: Annotated[bool, typer.Option("--int8", help=INT8_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """COCO mAP@0.5 and mAP@0.5:0.95, per-class AP, P/R/F1 and a confusion matrix for a bundle."""
    from training.evaluate_cli import BackendOptions, print_eval, run_eval  # loads torch: this command only

    try:
        result = run_eval(
            model=model,
            data=data,
            format=format,
            images=images,
            split=split,
            conf=conf,
            device=device,
            show_progress=not as_json,
            runtime=BackendOptions(backend=backend, int8=int8),
        )
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    if plots:
        plots.mkdir(parents=True, exist_ok=True)
        plot_pr_curves(result, plots / "pr_curves.png")
        plot_confusion_matrix(result, plots / "confusion_matrix.png")
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    print_eval(result)


@app.command("calibrate-thresholds")
def calibrate_thresholds_command(
    model: Annotated[Path, typer.Option("--model", help="Model bundle folder (its manifest is updated)")],
    data: Annotated[Path, typer.Option("--data", help="Annotations (any supported format)")],
    format: Annotated[str, typer.Option("--format")] = "auto",
    images: Annotated[Path | None, typer.Option("--images", help="Image folder")] = None,
    split: Annotated[
        Path | None, typer.Option("--split", help="Calibrate on the val side of this split")
    ] = None,
    method: Annotated[str, typer.Option("--method", help="f1 | recall | line (see the README)")] = "f1",
    target_recall: Annotated[float, typer.Option("--target-recall", help="For --method recall")] = 0.95,
    target_reject: Annotated[
        float, typer.Option("--target-reject-recall", help="--method line: overall reject recall to keep")
    ] = 0.99,
    target_class_reject: Annotated[
        float, typer.Option("--target-class-reject-recall", help="--method line: every class's reject recall")
    ] = 0.97,
    floor: Annotated[float, typer.Option("--floor", help="No class threshold below this")] = 0.05,
    clean: Annotated[
        Path | None,
        typer.Option("--clean", help="A `steel data background` folder: its clean tiles join as defect-free"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; leave the bundle")] = False,
    device: Annotated[str, typer.Option("--device")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Choose a score threshold per class on validation data and store them in the bundle's manifest."""
    # scoring loads torch (seconds): only this command needs it
    from training.calibrate_cli import print_report, report_dict, run_calibration, with_clean_tiles
    from training.evaluate_cli import score_dataset

    try:
        cfg = CalibrationConfig(
            method=method,
            target_recall=target_recall,
            floor=floor,
            target_reject_recall=target_reject,
            target_class_reject_recall=target_class_reject,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", 2) from None
    try:
        scored = score_dataset(
            model=model, data=data, format=format, images=images, split=split, device=device,
            show_progress=not as_json,
        )  # fmt: skip
        if clean is not None:
            scored = with_clean_tiles(scored, clean, split)
        report = run_calibration(scored, cfg, write=not dry_run)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(report_dict(report)) + "\n")
    else:
        print_report(report, model / "manifest.json")


@app.command("pseudo-label")
def pseudo_label_command(
    teacher: Annotated[Path, typer.Option("--teacher", help="Teacher bundle (e.g. the accuracy ensemble)")],
    data: Annotated[Path, typer.Option("--data", help="Annotations (any supported format)")],
    split: Annotated[Path, typer.Option("--split", help="Only its training side gets pseudo-labels")],
    out: Annotated[Path, typer.Option("--out", help="COCO JSON to write (a recipe's data.path)")],
    format: Annotated[str, typer.Option("--format")] = "auto",
    images: Annotated[Path | None, typer.Option("--images", help="Image folder")] = None,
    min_score: Annotated[float, typer.Option("--min-score", help="Teacher boxes at or above this")] = 0.5,
    max_iou: Annotated[
        float, typer.Option("--max-iou", help="...overlapping every annotated box by less than this")
    ] = 0.3,
    device: Annotated[str, typer.Option("--device")] = "auto",
) -> None:
    """Add a teacher's confident boxes where the annotators drew none (training side only)."""
    # scoring loads torch (seconds): only this command needs it
    from training.pseudo_label_cli import report_lines, run_pseudo_labels
    from training.pseudo_labels import PseudoLabelRule

    try:
        rule = PseudoLabelRule(min_score=min_score, max_iou=max_iou)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _fail(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", 2) from None
    try:
        report = run_pseudo_labels(
            teacher=teacher, data=data, split=split, out=out, rule=rule, format=format, images=images,
            device=device,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    for line in report_lines(report):
        typer.echo(line)
    typer.echo(f"wrote {out}")


# One image of `steel predict --json`: the JSON keys (``class`` is a keyword, hence the functional form).
_Detection = TypedDict("_Detection", {"class": str, "score": float, "xyxy": list[float]})


class _ImageDetections(TypedDict):
    image: str
    detections: list[_Detection]


@app.command("predict")
def predict_command(
    images: Annotated[list[Path], typer.Argument(help="Image files")],
    model: Annotated[Path, typer.Option("--model", help="Model bundle folder")],
    conf: Annotated[float | None, typer.Option("--conf")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)] = "auto",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Boxes, classes and scores for each image."""
    # the model loads torch (seconds): only this command needs it
    from training.bundle import BundleError
    from training.inference import Predictor, read_image

    try:
        predictor = Predictor(str(model), device=device, score_threshold=conf, backend=backend)
        arrays = [read_image(str(p)) for p in images]
    except (BundleError, ValueError) as exc:
        raise _fail(str(exc)) from None
    out: list[_ImageDetections] = []
    for path, det in zip(images, predictor(arrays), strict=True):
        boxes: list[_Detection] = [
            {
                "class": predictor.class_names[int(c)],
                "score": round(float(s), 4),
                "xyxy": [round(float(v), 2) for v in box],
            }
            for box, s, c in zip(det.xyxy, det.scores, det.class_ids, strict=True)
        ]
        out.append({"image": str(path), "detections": boxes})
    if as_json:
        sys.stdout.write(json.dumps({"model": predictor.version, "images": out}) + "\n")
        return
    for item in out:
        typer.echo(f"{item['image']}: {len(item['detections'])} detections")
        for d in item["detections"]:
            typer.echo(f"  {d['class']:<16} {d['score']:.3f}  {d['xyxy']}")


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Option("--model", help="Model bundle folder")],
    format: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file (default: <bundle>/model.onnx)")
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8", help="Also make the cached int8 export (needs --data)")
    ] = False,
    data: Annotated[Path | None, typer.Option("--data", help="--int8: calibration annotations")] = None,
    split: Annotated[Path | None, typer.Option("--split", help="--int8: calibrate on its train side")] = None,
) -> None:
    """Export the network (before NMS) for other runtimes; with --int8, the cached int8 graph too."""
    if format != "onnx":
        raise _fail(f"--format: {format!r} is not supported (allowed: onnx)", 2)
    if int8 and data is None:
        raise _fail("--int8: needs --data (training images to calibrate on)", 2)
    # the model loads torch (seconds): only this command needs it
    from training.bundle import BundleError, load_bundle
    from training.export import export_onnx

    try:
        bundle = load_bundle(model)
        path = export_onnx(bundle, out or model / "model.onnx")
        if int8 and data is not None:
            from training.quantize import quantize_from_dataset  # onnxruntime.quantization: int8 only

            typer.echo(f"wrote {quantize_from_dataset(bundle, data=data, split=split)}")
    except (BundleError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {path}")


@app.command("bundle-fp16")
def bundle_fp16_command(
    model: Annotated[Path, typer.Option("--model", help="Model bundle folder (fp32 weights)")],
    out: Annotated[Path, typer.Option("--out", help="New bundle folder (must not exist)")],
) -> None:
    """Copy a bundle with fp16 weights: half the bytes, loaded into the same fp32 model (check with eval)."""
    from training.bundle import BundleError  # torch: this command only
    from training.bundle_fp16 import half_precision_copy

    try:
        path = half_precision_copy(model, out)
    except BundleError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {path} ({sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6:.1f} MB)")
