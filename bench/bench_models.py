"""Benchmark: training and inference speed of each detector recipe, and validation mAP of model bundles.

Run from the repository root (on an otherwise idle machine; figures are per-machine):
``.venv/bin/python bench/bench_models.py [--recipes RECIPE.yaml ...] [--bundle models/neu-yolo-n ...]``

For each recipe, at its image size and channel count, on real NEU-DET training images:

* training img/s: forward + backward + optimizer step of the recipe's optimizer, batch ``--train-batch``,
  after warm-up steps (the model's compute only; the data pipeline is excluded). When the recipe's run
  folder has a ``metrics.json``, the whole trainer's img/s from that log is shown too.
* inference: batch-1 latency p50/p99 and batched throughput (``--infer-batch``) of the eval-mode forward
  (network, box decoding and NMS) under ``torch.inference_mode``.

For each bundle that exists: COCO mAP@0.5 and mAP@0.5:0.95 (pycocotools) on the validation side of the
split file, via the same code as ``steel eval``. Prints Markdown tables; never asserts.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, TypeAlias

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from datasets.settings import REPO_ROOT, data_root, load_config  # noqa: E402
from datasets.torch_dataset import DetectionDataset, collate_detection  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import prepare_data  # noqa: E402
from training.evaluate_cli import run_eval  # noqa: E402
from training.optim import build_optimizer  # noqa: E402
from training.registry import build_model  # noqa: E402

Figures: TypeAlias = dict[str, Any]  # JSON-ready figures (printed, and written with --out)

DEFAULT_RECIPES = ["configs/train/yolo_n.yaml", "configs/train/faster_rcnn_mbv3.yaml"]
DEFAULT_BUNDLES = ["models/neu-yolo-n", "models/neu-frcnn-mbv3"]
DEFAULT_SPLIT = "configs/splits/neu-det-dev.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _real_batch(cfg: TrainConfig, size: int) -> tuple[torch.Tensor, list[dict]]:
    """The first ``size`` training images of the recipe's split, resized as the trainer does."""
    data = prepare_data(cfg.data, out_dir=None, write=False)
    records = (data.train * (size // max(len(data.train), 1) + 1))[:size]
    dataset = DetectionDataset(
        records, data.class_names, image_size=cfg.model.image_size, in_channels=cfg.model.in_channels
    )
    images, targets = collate_detection([dataset[i] for i in range(len(dataset))])
    return images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


def bench_training(cfg: TrainConfig, *, batch: int, warmup: int, steps: int) -> float:
    """Images per second of forward + backward + step on one fixed real batch."""
    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes=len(cfg.data.classes)).train()
    optimizer = build_optimizer(cfg.train.optimizer, model)
    images, targets = _real_batch(cfg, batch)

    def step() -> None:
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


@torch.inference_mode()
def bench_inference(
    cfg: TrainConfig, *, batch: int, latency_iters: int, batched_iters: int
) -> dict[str, float]:
    """Batch-1 latency percentiles (ms) and batched throughput (img/s) of the eval-mode forward."""
    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes=len(cfg.data.classes)).eval()
    images, _ = _real_batch(cfg, batch)
    one = images[:1]
    for _ in range(5):
        model(one)
    times = []
    for i in range(latency_iters):
        start = time.perf_counter()
        model(images[i % batch : i % batch + 1])
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    model(images)  # warm-up at the batched shape
    start = time.perf_counter()
    for _ in range(batched_iters):
        model(images)
    throughput = batch * batched_iters / (time.perf_counter() - start)
    p99_index = min(len(times) - 1, round(0.99 * (len(times) - 1)))
    return {"p50_ms": statistics.median(times), "p99_ms": times[p99_index], "batched_img_s": throughput}


def trainer_throughput(cfg: TrainConfig) -> float | None:
    """Whole-trainer img/s (data pipeline included) from the recipe's run log, if it has been run."""
    out_dir = REPO_ROOT / cfg.train.out_dir
    metrics, manifest = out_dir / "metrics.json", out_dir / "bundle" / "manifest.json"
    if not metrics.is_file() or not manifest.is_file():
        return None
    history = json.loads(metrics.read_text())
    train_images = json.loads(manifest.read_text()).get("split", {}).get("train_images")
    if not history or not train_images or not history[-1].get("train_seconds"):
        return None
    per_epoch = train_images // cfg.train.batch_size * cfg.train.batch_size  # the loader drops the last
    if cfg.train.max_steps:
        per_epoch = min(per_epoch, cfg.train.max_steps * cfg.train.batch_size)
    return per_epoch * history[-1]["epoch"] / history[-1]["train_seconds"]


def bench_bundle(bundle: Path, split: Path) -> Figures:
    start = time.perf_counter()
    result = run_eval(
        model=bundle, data=data_root() / "annotations", split=split, device="cpu", show_progress=False
    )
    return {
        "images": result.images,
        "map50": result.map50,
        "map50_95": result.map50_95,
        "per_class_ap50": {k: v["ap50"] for k, v in result.per_class.items()},
        "seconds": time.perf_counter() - start,
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", default=DEFAULT_RECIPES, help="training recipes (YAML)")
    parser.add_argument("--bundle", action="append", default=None, help="bundle to score (repeatable)")
    parser.add_argument("--split", default=DEFAULT_SPLIT, help="split file: the val side is scored")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-warmup", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--infer-batch", type=int, default=32)
    parser.add_argument("--latency-iters", type=int, default=100)
    parser.add_argument("--batched-iters", type=int, default=5)
    parser.add_argument("--skip-speed", action="store_true", help="only score the bundles")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    return parser.parse_args(argv)


def bench_speed(args: argparse.Namespace) -> Figures:
    """Training and inference speed of each recipe's model (untrained weights), as a Markdown table."""
    speed: Figures = {}
    print(
        f"| recipe | size | train img/s (batch {args.train_batch}) | trainer img/s (run log) "
        f"| batch-1 p50 ms | batch-1 p99 ms | img/s (batch {args.infer_batch}) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for recipe in args.recipes:
        cfg = load_config(REPO_ROOT / recipe, TrainConfig)
        train = bench_training(cfg, batch=args.train_batch, warmup=args.train_warmup, steps=args.train_steps)
        infer = bench_inference(
            cfg,
            batch=args.infer_batch,
            latency_iters=args.latency_iters,
            batched_iters=args.batched_iters,
        )
        logged = trainer_throughput(cfg)
        speed[cfg.name] = {"train_img_s": train, "trainer_img_s": logged, **infer}
        size = f"{cfg.model.image_size}x{cfg.model.image_size}x{cfg.model.in_channels}"
        print(
            f"| {cfg.name} | {size} | {train:.1f} | {_fmt(logged)} | {infer['p50_ms']:.1f} "
            f"| {infer['p99_ms']:.1f} | {infer['batched_img_s']:.1f} |",
            flush=True,
        )
    print()
    return speed


def bench_accuracy(args: argparse.Namespace) -> Figures:
    """Each bundle present scored on the split's validation side, as a Markdown table."""
    bundles = [Path(b) for b in (args.bundle or DEFAULT_BUNDLES)]
    present = [b for b in bundles if (b / "manifest.json").is_file()]
    for missing in sorted(set(bundles) - set(present)):
        print(f"(bundle {missing} not found: skipped)")
    if not present:
        return {}
    scored = {str(b): bench_bundle(b, Path(args.split)) for b in present}
    classes = list(next(iter(scored.values()))["per_class_ap50"])
    print(f"\nValidation side of {args.split}:\n")
    print("| bundle | images | mAP@0.5 | mAP@0.5:0.95 | " + " | ".join(classes) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(classes))
    for name, s in scored.items():
        per_class = " | ".join(_fmt(s["per_class_ap50"].get(c), 3) for c in classes)
        print(f"| {name} | {s['images']} | {s['map50']:.3f} | {s['map50_95']:.3f} | {per_class} |")
    return scored


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    figures: Figures = {
        "machine": {"cpu": _cpu_name(), "threads": args.threads, "torch": torch.__version__},
        "speed": {},
        "accuracy": {},
    }
    print(f"{_cpu_name()}, torch {torch.__version__}, {args.threads} threads\n")
    if not args.skip_speed and args.recipes:
        figures["speed"] = bench_speed(args)
    figures["accuracy"] = bench_accuracy(args)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
