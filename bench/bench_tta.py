"""Benchmark: a bundle alone against the same bundle with horizontal-flip test-time augmentation fused by
weighted box fusion (the ensemble bundle's code path), on the validation side of a split.

Run from the repository root:
``python bench/bench_tta.py --model models/neu-yolo-n [--split configs/splits/neu-det-dev.json]``

Each image is scored once straight and once mirrored; each fusion setting then fuses those outputs
(``training.ensemble.fuse_views``, exactly what an ensemble bundle runs). Per row: mAP@0.5, mAP@0.5:0.95,
crazing / rolled-in_scale AP50, and the line figures at the operating point calibrated on the same images
(best F1 per class, ``steel calibrate-thresholds`` default), so rows are compared at their own best point.
The calibration is on the images it is scored on: optimistic, the same for every row. Prints a Markdown
table; never asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.readers import read_dataset  # noqa: E402
from datasets.split import apply_split, read_split  # noqa: E402
from training.bundle import load_bundle  # noqa: E402
from training.ensemble import fuse_views  # noqa: E402
from training.evaluation import Prediction, evaluate, ground_truth_from_records  # noqa: E402
from training.inference import Predictor, read_image, to_model_input  # noqa: E402
from training.manifest import FusionSpec  # noqa: E402
from training.operating_point import CalibrationConfig, calibrate  # noqa: E402

Views = list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]


@torch.inference_mode()
def score_views(model: torch.nn.Module, images: list[np.ndarray], size: int, channels: int) -> Views:
    """Per image: the model's outputs on it and on its mirror (model pixels)."""
    views: Views = []
    for start in range(0, len(images), 32):
        batch = np.stack(
            [to_model_input(im, size=size, channels=channels) for im in images[start : start + 32]]
        )
        x = torch.from_numpy(batch).float().div_(255.0)
        views += list(zip(model(x), model(torch.flip(x, dims=[-1])), strict=True))
    return views


def predictions(
    views: Views, images: list[np.ndarray], size: int, fusion: FusionSpec | None
) -> list[Prediction]:
    preds = []
    for (straight, mirrored), image in zip(views, images, strict=True):
        h, w = image.shape[:2]
        if fusion is None:
            boxes = straight["boxes"].numpy() * [w / size, h / size, w / size, h / size]
            preds.append(Prediction(boxes, straight["scores"].numpy(), straight["labels"].numpy()))
            continue
        boxes, scores, labels = fuse_views(
            [(straight, size, False), (mirrored, size, True)], weights=[1.0, 1.0], fusion=fusion
        )
        preds.append(Prediction(boxes * [w, h, w, h], scores, labels))
    return preds


def row(name: str, gts, preds, names: list[str]) -> str:
    point = calibrate(gts, preds, names, CalibrationConfig())
    r = evaluate(gts, preds, names, conf_threshold=0.25, per_class_thresholds=point.per_class)
    worst = min(v for v in r.line.reject_recall_per_class.values() if v is not None)
    ap = {k: v["ap50"] for k, v in r.per_class.items()}
    return (
        f"| {name} | {r.map50:.4f} | {r.map50_95:.4f} | {ap['crazing']:.3f} | {ap['rolled-in_scale']:.3f} "
        f"| {r.line.reject_recall:.3f} | {worst:.3f} | {r.line.stray_per_100_images:.1f} |"
    )


def latency_ms(model: Path, image: np.ndarray, runs: int = 30) -> float:
    """Median batch-1 latency of ``steel predict``'s path (Predictor: resize, network, NMS, fusion)."""
    predictor = Predictor(str(model), device="cpu", batch_size=1)
    predictor.warmup()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        predictor([image])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/neu-yolo-n"))
    parser.add_argument("--split", type=Path, default=Path("configs/splits/neu-det-dev.json"))
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("STEEL_DATA", "")) / "annotations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ensemble", type=Path, help="also time this ensemble folder against --model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.model)
    names = bundle.class_names
    aset = read_dataset(args.data, class_names=names)
    _, val = apply_split(aset, read_split(args.split))
    records = val.images
    images = [read_image(str(r.path)) for r in records]
    gts = ground_truth_from_records(records, names)
    views = score_views(bundle.model, images, bundle.image_size, bundle.in_channels)
    print(f"{len(records)} images, {args.model} ({bundle.version}); line figures at best-F1 points\n")
    print("| setting | mAP@0.5 | mAP@0.5:0.95 | crazing AP50 | rolled-in AP50 | reject recall | worst class "
          "| stray/100 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print(row("plain", gts, predictions(views, images, bundle.image_size, None), names))
    for conf_type in ("avg", "max", "box_and_model_avg"):
        for iou_thr in (0.55, 0.7):
            fusion = FusionSpec(conf_type=conf_type, iou_thr=iou_thr)
            preds = predictions(views, images, bundle.image_size, fusion)
            print(row(f"hflip TTA, WBF {conf_type} iou {iou_thr}", gts, preds, names), flush=True)
    if args.ensemble:
        plain, fused = latency_ms(args.model, images[0]), latency_ms(args.ensemble, images[0])
        print(f"\nbatch-1 latency p50 (CPU, {args.threads} threads): {args.model} {plain:.1f} ms, "
              f"{args.ensemble} {fused:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
