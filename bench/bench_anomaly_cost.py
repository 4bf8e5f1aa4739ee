"""Benchmark: saved anomaly models' cost per tile against the detector's, timed interleaved.

Run from the repository root on an idle machine:
``.venv/bin/python bench/bench_anomaly_cost.py --anomaly models/neu-yolo-n models/neu-yolo-n-bg30-s0``

Loads each anomaly model as the daemon does (``backend=auto``: the backbone stages as one ONNX Runtime
graph) and times it and the bundle's detector (``Predictor``, its default backend) on the same clean
validation tiles, batch 32, runs interleaved so a change of load hits all alike. Prints ms per tile and
the ratio to the detector; never asserts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.bench_anomaly import bench_inputs, ms_per_tile  # noqa: E402
from training.anomaly.store import load_anomaly  # noqa: E402
from training.anomaly.texture import TextureFusedScorer  # noqa: E402
from training.inference import Predictor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="models/neu-yolo-n", help="the detector to compare with")
    parser.add_argument("--anomaly", nargs="+", default=["models/neu-yolo-n"], help="anomaly folders/bundles")
    parser.add_argument("--tiles", default="runs/background/neu-dev")
    parser.add_argument("--split", default="configs/splits/neu-det-dev.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--count", type=int, default=32, help="clean validation tiles timed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, clean, detector = bench_inputs(args.split, args.tiles, args.bundle)
    models = [load_anomaly(path, threads=args.threads) for path in args.anomaly]
    fns = [Predictor(detector, device="cpu")] + [m.scorer.maps for m in models]
    fused = [m.scorer for m in models if isinstance(m.scorer, TextureFusedScorer)]
    fns += [f.glcm.maps for f in fused]
    times = ms_per_tile(fns, clean.val[: args.count])
    print(f"detector {detector.version}: {times[0]:.2f} ms/tile ({args.threads} threads, batch {args.count})")
    for model, ms in zip(models, times[1:], strict=False):
        print(f"{model.manifest['version']}: {ms:.2f} ms/tile, {ms / times[0]:.0%} of the detector")
    for ms in times[1 + len(models) :]:
        print(f"  its GLCM windows alone: {ms:.2f} ms/tile")


if __name__ == "__main__":
    main()
