"""Benchmark: one YOLO training step on the CPU in float32 and in bf16 autocast, with and without
channels_last (what ``train.cpu_precision`` chooses between).

Run from the repository root: ``python bench/bench_train_step.py [--sizes n s] [--threads 1] [--rounds 3]``.
A batch of 16 real NEU-DET training images at 224 px with their boxes; forward, loss, backward and an
AdamW step, timed interleaved (every set-up once per round, best round counts) so a busy machine moves
all rows alike. Prints a Markdown table of wall and CPU ms per step; never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import torch  # noqa: E402

from datasets.readers import read_dataset  # noqa: E402
from datasets.split import apply_split, read_split  # noqa: E402
from training.models.yolo.model import YoloConfig, build_yolo  # noqa: E402
from training.optim import OptimizerConfig, build_optimizer  # noqa: E402

SETUPS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def neu_batch(data: Path, split: Path, size: int, n: int = 16) -> tuple[torch.Tensor, list[dict]]:
    """``n`` training images (gray, resized to ``size``) with their boxes in model pixels."""
    aset = read_dataset(data)
    train, _ = apply_split(aset, read_split(split))
    step = max(1, len(train.images) // n)
    records = train.images[::step][:n]
    images, targets = [], []
    for r in records:
        gray = cv2.imread(str(r.found_path()), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise SystemExit(f"cannot read {r.found_path()}")
        sx, sy = size / gray.shape[1], size / gray.shape[0]
        images.append(torch.from_numpy(cv2.resize(gray, (size, size))).float().div(255)[None])
        boxes = torch.tensor([[b.x1 * sx, b.y1 * sy, b.x2 * sx, b.y2 * sy] for b in r.boxes])
        labels = torch.tensor([aset.class_names.index(b.label) for b in r.boxes])
        targets.append({"boxes": boxes, "labels": labels})
    return torch.stack(images), targets


def step_ms(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, list[dict]],
    precision: str,
    cl: bool,
) -> tuple[float, float]:
    images, targets = batch
    images = images.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        losses = model(images, targets)
    opt.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    opt.step()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["n", "s"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("STEEL_DATA", "")) / "annotations")
    parser.add_argument("--split", type=Path, default=Path("configs/splits/neu-det-dev.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = neu_batch(args.data, args.split, 224)
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), native bf16: {native}; 16 NEU images, 224 px\n"
    )
    print("| model | precision | channels_last | wall ms/step | CPU ms/step | CPU vs fp32 |")
    print("|---|---|---|---:|---:|---:|")
    for size in args.sizes:
        torch.manual_seed(0)
        model = build_yolo(YoloConfig(size=size), num_classes=6, in_channels=1, image_size=224).train()
        opt = build_optimizer(OptimizerConfig(), model)
        best: dict[tuple[str, bool], tuple[float, float]] = {}
        for _ in range(args.rounds):
            for precision, cl in SETUPS:
                model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
                step_ms(model, opt, batch, precision, cl)  # warm-up for this layout
                wall, cpu = step_ms(model, opt, batch, precision, cl)
                old = best.get((precision, cl), (float("inf"), float("inf")))
                best[(precision, cl)] = (min(old[0], wall), min(old[1], cpu))
        base = best[("fp32", False)][1]
        for precision, cl in SETUPS:
            wall, cpu = best[(precision, cl)]
            print(
                f"| YOLO-{size} | {precision} | {cl} | {wall:.0f} | {cpu:.0f} | {base / cpu:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
