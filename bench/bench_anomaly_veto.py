"""Benchmark: the anomaly map as a second opinion on each detection (strays on clean steel vs recall).

Run from the repository root (after ``steel data background ... --out runs/background/neu-dev``):
``.venv/bin/python bench/bench_anomaly_veto.py [--bundle models/neu-yolo-n] [--quantiles 0.5 0.9]``

A detection's *evidence* is the highest value of the bundle's anomaly map (``anomaly/``, trained on clean
steel only) inside its box. A detection whose evidence stays below a level that clean steel reaches
anyway is what the rule would drop. The levels are quantiles of the clean *training* tiles' tile scores;
each row is measured on held-out data: strays per 100 clean *validation* tiles and, on the validation
images, reject recall overall and per class and strays per 100 images, all at the bundle's own operating
point. The first row is the detector alone. Never asserts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.background import read_gray_image  # noqa: E402
from datasets.detections import Detections  # noqa: E402
from datasets.readers import read_dataset  # noqa: E402
from datasets.settings import data_root  # noqa: E402
from datasets.split import apply_split, read_split  # noqa: E402
from inspection.calibration import alarms_per_1000  # noqa: E402
from training.anomaly.base import box_evidence, tile_score  # noqa: E402
from training.anomaly.store import load_anomaly  # noqa: E402
from training.background import load_canvases  # noqa: E402
from training.eval_inputs import ground_truth_from_records  # noqa: E402
from training.evaluation import Prediction  # noqa: E402
from training.inference import Predictor  # noqa: E402
from training.line_figures import line_figures  # noqa: E402

LOW_SCORE = 0.01


def scored(predictor: Predictor, scorer, images: list[np.ndarray]) -> list[tuple[Detections, np.ndarray]]:
    """Detections at a low score and each box's evidence, image by image."""
    dets = predictor(images)
    maps = scorer.maps(images)
    return [(d, box_evidence(d.xyxy, m)) for d, m in zip(dets, maps, strict=True)]


def vetoed(items: list[tuple[Detections, np.ndarray]], level: float) -> list[Detections]:
    return [d[evidence >= level] for d, evidence in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="models/neu-yolo-n")
    parser.add_argument("--tiles", default="runs/background/neu-dev")
    parser.add_argument("--split", default="configs/splits/neu-det-dev.json")
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.05, 0.25, 0.5, 0.75, 0.9, 0.99])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = read_split(args.split)
    _, val_set = apply_split(read_dataset(data_root() / "annotations"), split)
    predictor = Predictor(args.bundle, device="cpu", score_threshold=LOW_SCORE)
    anomaly = load_anomaly(args.bundle, threads=args.threads)
    names = list(predictor.class_names)
    clean_train = [c.image for c in load_canvases(args.tiles, set(split.train))]
    levels = np.quantile([tile_score(m) for m in anomaly.scorer.maps(clean_train)], args.quantiles)
    clean_val = scored(
        predictor, anomaly.scorer, [c.image for c in load_canvases(args.tiles, set(split.val))]
    )
    val = scored(predictor, anomaly.scorer, [read_gray_image(r.found_path()) for r in val_set.images])
    gts = ground_truth_from_records(val_set.images, names)
    own = predictor.bundle.class_thresholds(None)
    print(f"{predictor.version} + {anomaly.manifest['version']}: {len(clean_train)} clean training tiles "
          f"(levels), {len(clean_val)} clean validation tiles, {len(gts)} validation images\n")  # fmt: skip
    print("| evidence level (clean training tile quantile) | strays / 100 clean val tiles | reject recall | "
          "worst class | strays / 100 val images | " + " | ".join(names) + " |")  # fmt: skip
    print("|---|--:|--:|--:|--:|" + "--:|" * len(names))
    rows = [("detector alone", -np.inf)] + [
        (f"{lvl:.1f} (q {q:g})", lvl) for q, lvl in zip(args.quantiles, levels, strict=True)
    ]
    for label, level in rows:
        kept = vetoed(val, level)
        figures = line_figures(gts, [Prediction(d.xyxy, d.scores, d.class_ids) for d in kept], names, own)
        thresholds = dict(zip(names, (float(t) for t in own), strict=True))
        strays = alarms_per_1000(vetoed(clean_val, level), thresholds, names) / 10.0
        per = [figures.reject_recall_per_class[n] for n in names]
        worst = min(p for p in per if p is not None)
        cells = [
            f"{strays:.1f}",
            f"{figures.reject_recall:.3f}",
            f"{worst:.3f}",
            f"{figures.stray_per_100_images:.1f}",
        ]
        print(f"| {label} | " + " | ".join(cells + [f"{p:.2f}" for p in per]) + " |")


if __name__ == "__main__":
    main()
