"""Benchmark: anomaly candidates trained only on clean tiles, compared on validation.

Run from the repository root (after ``steel data background ... --out runs/background/neu-dev``):
``.venv/bin/python bench/bench_anomaly.py [--bundle models/neu-yolo-n] [--tiles runs/background/neu-dev]``

For each candidate (a Gaussian memory of our detector's early backbone features; a small convolutional
autoencoder), fitted on clean tiles cut from the split's training images:

* tile AUROC: validation defect images (all 288, each holds a defect) vs clean validation tiles;
* pixel AUROC: map values inside vs outside the boxes of the validation defect images;
* threshold for ``--budget`` false alarms per 1,000 clean tiles (from the training clean tiles), the
  false alarms it gives on clean validation tiles and the share of defect images above it;
* ms per tile (batch 32, ``--threads``) and that cost relative to the detector on the same tiles.

Each fitted model is saved (safetensors + JSON) under ``--out/<kind>``. Prints a Markdown table; never
asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from datasets.model import AnnotatedSet  # noqa: E402
from datasets.readers import read_dataset  # noqa: E402
from datasets.settings import data_root  # noqa: E402
from datasets.split import apply_split, read_split  # noqa: E402
from training.anomaly.autoencoder import AutoencoderScorer  # noqa: E402
from training.anomaly.calibrate import EVIDENCE_QUANTILE  # noqa: E402
from training.anomaly.fit import CANDIDATES, CleanData, fit_candidate, load_clean, validate  # noqa: E402
from training.anomaly.store import save_anomaly  # noqa: E402
from training.bundle import Bundle, load_bundle  # noqa: E402
from training.inference import Predictor  # noqa: E402


def bench_inputs(split_file: str, tiles: str, bundle: str) -> tuple[AnnotatedSet, CleanData, Bundle]:
    """The validation side of the split, the clean tiles by side and the detector (both anomaly benches)."""
    split = read_split(split_file)
    _, val_set = apply_split(read_dataset(data_root() / "annotations"), split)
    clean = load_clean(tiles, train_names=set(split.train), val_names=set(split.val))
    return val_set, clean, load_bundle(bundle, device="cpu")


def ms_per_tile(fns: list, tiles, repeats: int = 7) -> list[float]:
    """Median ms per tile of each function, their runs interleaved (the shared CPU's load changes by the
    minute: interleaving keeps the ratios fair)."""
    for fn in fns:
        fn(tiles[:4])  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn(tiles)
            out.append((time.perf_counter() - start) * 1000.0 / len(tiles))
    return [statistics.median(t) for t in times]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="models/neu-yolo-n")
    parser.add_argument("--tiles", default="runs/background/neu-dev")
    parser.add_argument("--split", default="configs/splits/neu-det-dev.json")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument(
        "--fit-tiles", type=int, default=0, help="clean training tiles the Gaussian fits (0: all)"
    )
    parser.add_argument(
        "--input-size", type=int, default=192, help="px the backbone sees (bench_anomaly_variants.py)"
    )
    parser.add_argument("--budget", type=float, default=1.0, help="false alarms per 1,000 clean tiles")
    parser.add_argument(
        "--calibration-tiles", type=int, default=400, help="clean training tiles for the threshold"
    )
    parser.add_argument("--ae-steps", type=int, default=800)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/anomaly")
    return parser.parse_args()


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    val_set, clean, detector = bench_inputs(args.split, args.tiles, args.bundle)
    predictor = Predictor(detector, device="cpu")
    print(
        f"clean tiles: {len(clean.train)} train (fit + threshold), {len(clean.val)} val; "
        f"defect images: {len(val_set.images)} val; budget {args.budget} per 1,000\n"
    )
    rows = []
    print("fitting ...", flush=True)
    for kind in args.candidates:
        row = _bench(kind, args, detector, predictor, clean, val_set.images)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)}), flush=True)
    _print(rows)
    (Path(args.out) / "bench.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


def _bench(kind: str, args: argparse.Namespace, detector, predictor, clean, defects) -> dict:
    """Fit one candidate, validate it, time it against the detector, save it; its table row."""
    start = time.perf_counter()
    scorer = fit_candidate(
        kind, detector, clean, ae_steps=args.ae_steps, fit_tiles=args.fit_tiles, input_size=args.input_size
    )
    fit_s = time.perf_counter() - start
    if not isinstance(scorer, AutoencoderScorer):
        scorer.use_onnxruntime(args.threads)  # the fitted memory into the ONNX graph, as the daemon runs it
    figures = validate(
        scorer, clean, defects, budget_per_1000=args.budget, calibration_tiles=args.calibration_tiles
    )
    detector_ms, ms = ms_per_tile([predictor, scorer.maps], clean.val[:32])
    row = {"kind": kind, "fit_s": fit_s, "ms_per_tile": ms, "detector_ms_per_tile": detector_ms}
    row |= figures.to_dict()
    row["cost_vs_detector"] = ms / detector_ms
    threshold = {
        "score": figures.threshold,
        "budget_per_1000": args.budget,
        "fitted_on": args.tiles,
        "detection_evidence": figures.detection_evidence,  # the daemon drops detections below it
        "detection_evidence_quantile": EVIDENCE_QUANTILE,
    }
    extra = {
        "architecture": _arch(kind, detector),
        "threshold": threshold,
        "metrics": row,
        "source_bundle": detector.version,
    }
    name = kind.replace(":", "-s").replace("+", "-")
    version = f"{name}{_size_tag(scorer)}-{detector.version}"
    row["saved"] = str(save_anomaly(Path(args.out) / name, scorer, version=version, extra=extra))
    return row


def _size_tag(scorer) -> str:
    return "" if isinstance(scorer, AutoencoderScorer) else f"-i{scorer.input_size}"


def _arch(kind: str, detector) -> dict:
    if not kind.startswith("backbone-gaussian"):
        return {}
    return {"backbone_size": detector.model_config.yolo.size, "in_channels": detector.in_channels}


def _print(rows: list[dict]) -> None:
    print(
        "| candidate | tile AUROC | pixel AUROC | val false alarms /1000 | defect recall @thr | "
        "ms/tile | cost vs detector | fit s |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['tile_auroc']:.3f} | {r['pixel_auroc']:.3f} | "
            f"{r['val_false_alarms_per_1000']:.1f} ({r['val_clean_tiles']} tiles) | "
            f"{r['defect_tile_recall']:.1%} | {r['ms_per_tile']:.1f} | {r['cost_vs_detector']:.0%} | "
            f"{r['fit_s']:.0f} |"
        )
    print(
        f"\ndetector (same tiles, batch 32, timed interleaved): {rows[0]['detector_ms_per_tile']:.1f} ms/tile"
    )


if __name__ == "__main__":
    main()
