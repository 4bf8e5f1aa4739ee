"""Benchmark: cheap variants of the backbone anomaly model, on features computed once per input size.

Run from the repository root (after ``steel data background ... --out runs/background/neu-dev``):
``.venv/bin/python bench/bench_anomaly_variants.py [--input-sizes 224 160] [--memory 4000 8000]``

For each input size the early backbone (stages 2-3 of ``--bundle``) runs once on the clean training
tiles (fit and threshold), the clean validation tiles and the validation defect images; then each memory
(the shipped Gaussian, a PatchCore-style nearest-neighbour coreset of ``--memory`` patches) and each
image-level score (the map's maximum, or the mean of its top 1 % of pixels) is measured like
``bench_anomaly.py``: tile AUROC, pixel AUROC, false alarms on clean validation tiles at the threshold
for ``--budget`` per 1,000 training tiles, ms per tile (the real ``maps`` path, batch 32) and that cost
relative to the detector. Prints a Markdown table; never asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.bench_anomaly import bench_inputs, ms_per_tile  # noqa: E402
from datasets.background import read_gray_image  # noqa: E402
from training.anomaly.base import finish_map, tile_score  # noqa: E402
from training.anomaly.calibrate import (  # noqa: E402
    false_alarms_per_1000,
    pixel_auroc,
    threshold_for_budget,
    tile_auroc,
)
from training.anomaly.features import EarlyBackbone  # noqa: E402
from training.anomaly.gaussian import FeatureGaussian  # noqa: E402
from training.anomaly.knn import FeatureKNN  # noqa: E402
from training.inference import Predictor  # noqa: E402
from training.models.yolo.model import as_yolo  # noqa: E402

Scorer = FeatureGaussian | FeatureKNN


def top_share_score(anomaly_map: np.ndarray, share: float = 0.01, border_px: int = 4) -> float:
    """Mean of the highest ``share`` of a map's pixels (border left out, as in ``tile_score``)."""
    h, w = anomaly_map.shape
    inner = anomaly_map[border_px : h - border_px, border_px : w - border_px].ravel()
    k = max(1, int(share * inner.size))
    return float(np.partition(inner, -k)[-k:].mean())


SCORES: dict[str, Callable[[np.ndarray], float]] = {"max": tile_score, "top1%": top_share_score}


def _maps(scorer: Scorer, feats: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    dist = scorer.distance_maps(feats)
    return [finish_map(m, hw) for m, hw in zip(dist, shapes, strict=True)]


def _figures(
    maps: dict[str, list[np.ndarray]],
    boxes: list[np.ndarray],
    score: Callable[[np.ndarray], float],
    budget: float,
) -> dict:
    scores = {name: [score(m) for m in ms] for name, ms in maps.items()}
    threshold = threshold_for_budget(scores["calib"], budget)
    return {
        "tile_auroc": tile_auroc(scores["defect"], scores["val"]),
        "pixel_auroc": pixel_auroc(maps["defect"], boxes),
        "val_false_alarms_per_1000": false_alarms_per_1000(scores["val"], threshold),
        "defect_recall": float(np.mean([s > threshold for s in scores["defect"]])),
    }


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="models/neu-yolo-n")
    parser.add_argument("--tiles", default="runs/background/neu-dev")
    parser.add_argument("--split", default="configs/splits/neu-det-dev.json")
    parser.add_argument("--input-sizes", type=int, nargs="+", default=[224, 160])
    parser.add_argument(
        "--memory", type=int, nargs="*", default=[], help="kNN coreset sizes (none: Gaussian only)"
    )
    parser.add_argument("--fit-tiles", type=int, default=0, help="0: every clean training tile")
    parser.add_argument("--last-stages", type=int, nargs="+", default=[3], choices=[3, 4])
    parser.add_argument("--pools", type=int, nargs="+", default=[3], help="local aggregation sides (odd)")
    parser.add_argument("--torch", action="store_true", help="run the backbone in torch, not ONNX Runtime")
    parser.add_argument("--calibration-tiles", type=int, default=400)
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    val_set, clean, detector = bench_inputs(args.split, args.tiles, args.bundle)
    timing = clean.val[:32]
    (detector_ms,) = ms_per_tile([Predictor(detector, device="cpu")], timing, repeats=3)
    defects = [read_gray_image(rec.found_path()) for rec in val_set.images]
    boxes = [np.array([b.xyxy for b in r.boxes], np.float32).reshape(-1, 4) for r in val_set.images]
    fit = clean.train[:: max(1, len(clean.train) // args.fit_tiles)] if args.fit_tiles else clean.train
    step = max(1, len(clean.train) // args.calibration_tiles)
    tile_sets = {"fit": fit, "calib": clean.train[1::step], "val": clean.val, "defect": defects}
    print(f"detector {detector_ms:.1f} ms/tile; fit {len(fit)}, calib {len(tile_sets['calib'])}, "
          f"val clean {len(clean.val)}, val defect {len(defects)}", flush=True)  # fmt: skip
    rows = []
    grid = [(s, st, p) for st in args.last_stages for p in args.pools for s in args.input_sizes]
    for size, stage, pool in grid:
        extractor = EarlyBackbone(as_yolo(detector.model).backbone, last_stage=stage, pool=pool)
        candidates: list[tuple[str, Scorer]] = [("gaussian", FeatureGaussian(extractor, input_size=size))]
        candidates += [(f"knn-{m}", FeatureKNN(extractor, input_size=size)) for m in args.memory]
        for _, scorer in candidates if not args.torch else []:
            scorer.use_onnxruntime(args.threads)
        first = candidates[0][1]
        sets = {k: (first.features(v), [t.shape[:2] for t in v]) for k, v in tile_sets.items()}
        for name, scorer in candidates:
            base = {"memory": name, "stages": f"2-{stage}", "pool": pool, "input": size}
            for row in _measure(scorer, name, sets, boxes, args, timing):
                row = base | row
                row["cost_vs_detector"] = row["ms_per_tile"] / detector_ms
                rows.append(row)
                print(row, flush=True)
    _print(rows, detector_ms)


def _measure(
    scorer: Scorer, name: str, sets: dict, boxes: list[np.ndarray], args: argparse.Namespace, timing: list
) -> list[dict]:
    """Fit one memory on the cached features, time its real ``maps`` path, score it both ways."""
    start = time.perf_counter()
    if isinstance(scorer, FeatureKNN):
        scorer.fit_features(sets["fit"][0], memory_size=int(name.split("-")[1]))
    else:
        scorer.fit_features(sets["fit"][0])
    fit_s = time.perf_counter() - start
    if not args.torch:  # the fitted memory into the graph too (the Gaussian's distances)
        scorer.use_onnxruntime(args.threads)
    (ms,) = ms_per_tile([scorer.maps], timing, repeats=3)
    maps = {k: _maps(scorer, feats, shapes) for k, (feats, shapes) in sets.items() if k != "fit"}
    return [
        {"score": score_name, "ms_per_tile": ms, "fit_s": fit_s} | _figures(maps, boxes, score, args.budget)
        for score_name, score in SCORES.items()
    ]


def _print(rows: list[dict], detector_ms: float) -> None:
    print("\n| memory | stages | pool | input px | tile score | tile AUROC | pixel AUROC | "
          "val false alarms /1000 | defect images above thr. | ms/tile | cost vs detector | "
          "fit s |")  # fmt: skip
    print("|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['memory']} | {r['stages']} | {r['pool']} | {r['input']} | {r['score']} | "
            f"{r['tile_auroc']:.3f} | "
            f"{r['pixel_auroc']:.3f} | "
            f"{r['val_false_alarms_per_1000']:.1f} | {r['defect_recall']:.1%} | {r['ms_per_tile']:.1f} | "
            f"{r['cost_vs_detector']:.0%} | {r['fit_s']:.0f} |"
        )
    print(f"\ndetector (same tiles, batch 32): {detector_ms:.1f} ms/tile")


if __name__ == "__main__":
    main()
