"""Benchmark: the predictor end to end on each backend (decoded image in, ``Detections`` out).

Run from the repository root: ``.venv/bin/python bench/bench_backends.py [--model models/neu-yolo-n]``.

Per backend (torch eager, ONNX Runtime fp32 and, when its export exists or ``--int8`` makes it, int8),
in one process on the same real NEU-DET images, interleaved round by round so a busy neighbour slows
every backend alike:

* **batch-1 p50/p99 ms**: ``Predictor([image])`` on a 200x200 image (resize, network, decode + NMS,
  ``Detections``), ``--single`` calls per round;
* **img/s batched**: ``Predictor(images)`` over ``--batch`` images at a time;
* **raw img/s**: the network alone on the same prepared batch (the ceiling the rest is measured against);
* **CPU ms/img**: process CPU time per image in the batched pass. On a busy, shared machine wall-clock
  figures measure the neighbours; CPU time per image says what the work itself costs (2 cores / it is
  the img/s an idle 2-core machine would give at perfect parallel efficiency: an upper estimate).

Prints a Markdown table and the ratios to torch; never asserts.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.settings import REPO_ROOT, data_root  # noqa: E402
from training.bundle import load_bundle  # noqa: E402
from training.inference import Predictor, read_image, to_model_input  # noqa: E402
from training.quantize import quantize_int8  # noqa: E402


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def neu_images(count: int) -> list[np.ndarray]:
    paths = sorted((data_root() / "images").glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no NEU-DET images under {data_root() / 'images'} (set STEEL_DATA)")
    step = max(1, len(paths) // count)
    return [read_image(str(p)) for p in paths[::step][:count]]


def make_predictors(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    predictors = {}
    for name, backend, int8 in (
        ("torch", "torch", False),
        ("onnxruntime fp32", "onnxruntime", False),
        ("onnxruntime int8", "onnxruntime", True),
    ):
        try:
            bundle = load_bundle(args.model)
            predictors[name] = Predictor(
                bundle, device="cpu", backend=backend, int8=int8, batch_size=args.batch, threads=args.threads
            )
        except ValueError as exc:
            print(f"({name}: skipped: {exc})")
    return predictors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "neu-yolo-n")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--single", type=int, default=40, help="batch-1 calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--int8", action="store_true", help="make the int8 export first when missing")
    args = parser.parse_args(argv)
    images = neu_images(args.batch * 2)
    if args.int8:
        quantize_int8(load_bundle(args.model), neu_images(128))
    predictors = make_predictors(args)
    single = {k: [] for k in predictors}
    batched = {k: [] for k in predictors}
    raw = {k: [] for k in predictors}
    cpu_ms = {k: [] for k in predictors}
    for p in predictors.values():
        p.warmup()
    for _ in range(args.rounds):
        for name, p in predictors.items():
            for image in images[: args.single]:
                t = time.perf_counter()
                p([image])
                single[name].append((time.perf_counter() - t) * 1000)
            t, c = time.perf_counter(), _cpu_seconds()
            p(images)
            batched[name].append(len(images) / (time.perf_counter() - t))
            cpu_ms[name].append((_cpu_seconds() - c) * 1000 / len(images))
            prepared = np.stack([to_model_input(im, size=p.size, channels=p.channels) for im in images])
            t = time.perf_counter()
            for start in range(0, len(prepared), args.batch):
                p._raw(prepared[start : start + args.batch])
            raw[name].append(len(images) / (time.perf_counter() - t))
    print(f"model {args.model}; {args.threads} threads; batch {args.batch}; best of {args.rounds} rounds\n")
    print(
        "| backend | batch-1 p50 ms | batch-1 p99 ms | img/s batched | raw network img/s | vs torch "
        "| CPU ms/img batched |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = max(batched["torch"]) if "torch" in batched else None
    for name in predictors:
        lat = sorted(single[name])
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        best = max(batched[name])
        ratio = f"{best / base:.2f}x" if base else ""
        print(
            f"| {name} | {statistics.median(lat):.1f} | {p99:.1f} | {best:.0f} | {max(raw[name]):.0f} | "
            f"{ratio} | {min(cpu_ms[name]):.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
