"""Benchmark: per-class operating points calibrated on clean tiles, strays on clean steel vs reject recall.

Run from the repository root (after ``steel data background ... --out runs/background/neu-dev``):
``.venv/bin/python bench/bench_clean_operating_point.py [--bundle models/neu-yolo-n] [--budgets 1 5 20]``

``steel calibrate --clean`` sets each class's threshold to the lowest value with at most its share of a
budget of detections on clean tiles (never below the bundle's operating point). Here the thresholds are
set on the clean tiles cut from the split's *training* images, for several budgets (strays per 100 clean
tiles), and measured on held-out data: strays per 100 clean *validation* tiles, and on the validation
images the line's figures (``training.line_figures``: reject recall, the share of defect images the
reject rule fires on) and box recall. The first row is the bundle's own operating point. Never asserts.
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
from inspection.calibration import alarms_per_1000, apply_class_thresholds, class_thresholds  # noqa: E402
from training.background import load_canvases  # noqa: E402
from training.evaluation import GroundTruth, Prediction, evaluate  # noqa: E402
from training.inference import Predictor  # noqa: E402
from training.line_figures import line_figures  # noqa: E402

LOW_SCORE = 0.01


def _row(
    label: str,
    thresholds: dict[str, float],
    names: list[str],
    clean_val: list[Detections],
    val: tuple[list[GroundTruth], list[Detections]],
) -> dict:
    gts, dets = val
    preds = [Prediction(d.xyxy, d.scores, d.class_ids) for d in dets]
    figures = line_figures(gts, preds, names, np.array([thresholds[n] for n in names]))
    kept = [apply_class_thresholds(d, thresholds, names) for d in dets]
    recall = evaluate(
        gts, [Prediction(d.xyxy, d.scores, d.class_ids) for d in kept], names, conf_threshold=1e-6
    )
    return {
        "label": label,
        "thresholds": thresholds,
        "strays_per_100_clean_val": alarms_per_1000(clean_val, thresholds, names) / 10.0,
        "reject_recall": figures.reject_recall,
        "reject_recall_per_class": figures.reject_recall_per_class,
        "box_recall": float(recall.recall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="models/neu-yolo-n")
    parser.add_argument("--tiles", default="runs/background/neu-dev")
    parser.add_argument("--split", default="configs/splits/neu-det-dev.json")
    parser.add_argument("--budgets", type=float, nargs="+", default=[1, 2, 5, 10, 20, 50])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = read_split(args.split)
    aset = read_dataset(data_root() / "annotations")
    _, val_set = apply_split(aset, split)
    predictor = Predictor(args.bundle, device="cpu", score_threshold=LOW_SCORE)
    names = list(predictor.class_names)
    index = {n: i for i, n in enumerate(names)}
    clean_train = predictor([c.image for c in load_canvases(args.tiles, set(split.train))])
    clean_val = predictor([c.image for c in load_canvases(args.tiles, set(split.val))])
    gts = [
        GroundTruth(
            np.array([b.xyxy for b in r.boxes], np.float32).reshape(-1, 4),
            np.array([index[b.label] for b in r.boxes], np.int64),
        )
        for r in val_set.images
    ]
    val = (gts, predictor([read_gray_image(r.found_path()) for r in val_set.images]))
    own = {n: float(t) for n, t in zip(names, predictor.bundle.class_thresholds(None), strict=True)}
    print(f"{predictor.version}: {len(clean_train)} clean training tiles (calibration), "
          f"{len(clean_val)} clean validation tiles, {len(gts)} validation images\n")  # fmt: skip
    rows = [_row("bundle's operating point", own, names, clean_val, val)]
    for budget in args.budgets:
        found = class_thresholds(clean_train, names, budget_per_1000=budget * 10.0, floor=min(own.values()))
        thresholds = {n: max(t, own[n]) for n, t in found.items()}
        rows.append(_row(f"<= {budget:g} per 100 clean training tiles", thresholds, names, clean_val, val))
    _print(rows, names)


def _print(rows: list[dict], names: list[str]) -> None:
    print("| operating point | strays / 100 clean val tiles | reject recall (val) | box recall (val) | "
          + " | ".join(f"thr. {n}" for n in names) + " |")  # fmt: skip
    print("|---|--:|--:|--:|" + "--:|" * len(names))
    for r in rows:
        print(
            f"| {r['label']} | {r['strays_per_100_clean_val']:.1f} | {r['reject_recall']:.3f} | "
            f"{r['box_recall']:.3f} | " + " | ".join(f"{r['thresholds'][n]:.2f}" for n in names) + " |"
        )
    print("\nreject recall per class:")
    for r in rows:
        per = r["reject_recall_per_class"]
        print(f"  {r['label']}: " + ", ".join(f"{n} {per[n]:.2f}" for n in names if per[n] is not None))


if __name__ == "__main__":
    main()
