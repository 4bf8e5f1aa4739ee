"""What ``steel eval`` does: read a labelled set, score it with a bundle, evaluate with COCO metrics."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from datasets.readers import read_dataset
from training.evaluation import EvalResult, Prediction, evaluate, ground_truth_from_records

CALIBRATION_IMAGES = 128  # training images for int8 calibration, spread evenly over the training side


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
    backend: str = "auto",
    int8: bool = False,
    calibration_images: int = CALIBRATION_IMAGES,
) -> EvalResult:
    """With ``int8`` and no int8 export yet, one is made, calibrated on ``calibration_images`` images of
    the split's training side (all images without a split)."""
    from training.bundle import load_bundle
    from training.inference import Predictor, read_image

    bundle = load_bundle(model)
    aset = read_dataset(data, format=format, images_dir=images, class_names=bundle.class_names)
    errors = [p for p in aset.problems if p.severity == "error"]
    if errors:
        raise ValueError(f"{len(errors)} annotation errors, e.g. {errors[0]}")
    records = train_records = aset.images
    if split is not None:
        from datasets.split import apply_split, read_split

        train, val = apply_split(aset, read_split(split))
        records, train_records = val.images, train.images
    if int8:
        from training.quantize import calibration_records, quantize_int8

        calibration = calibration_records(train_records, calibration_images)
        quantize_int8(bundle, [read_image(str(r.path)) for r in calibration])
    predictor = Predictor(
        bundle, device=device, score_threshold=0.0, batch_size=batch_size, backend=backend, int8=int8
    )
    preds: list[Prediction] = []
    for start in tqdm(
        range(0, len(records), batch_size), desc="scoring", disable=not show_progress, leave=False
    ):
        chunk = records[start : start + batch_size]
        for det in predictor([read_image(str(r.path)) for r in chunk]):
            preds.append(Prediction(det.xyxy, det.scores, det.class_ids))
    gts = ground_truth_from_records(records, predictor.class_names)
    threshold = conf if conf is not None else predictor.bundle.score_threshold
    return evaluate(gts, preds, predictor.class_names, conf_threshold=threshold)


def print_eval(result: EvalResult) -> None:
    console = Console()
    console.print(
        f"[bold]{result.images} images[/]  mAP@0.5 [bold]{result.map50:.4f}[/]  "
        f"mAP@0.5:0.95 {result.map50_95:.4f}  P {result.precision:.3f} R {result.recall:.3f} "
        f"F1 {result.f1:.3f} @ conf {result.conf_threshold}  (best F1 {result.best_f1:.3f} "
        f"@ {result.best_conf:.3f})"
    )
    table = Table("class", "boxes", "AP50", "AP50:95")
    for name, v in result.per_class.items():
        ap50 = "-" if v["ap50"] is None else f"{v['ap50']:.3f}"
        ap = "-" if v["ap"] is None else f"{v['ap']:.3f}"
        table.add_row(name, str(v["gt"]), ap50, ap)
    console.print(table)
