"""Benchmark: several independently trained bundles fused by weighted box fusion, with and without flip
test-time augmentation, on the validation side of a split (issue 12's "ensemble with WBF" lever).

Run from the repository root:
``python bench/bench_ensemble.py models/neu-yolo-n runs/a/bundle runs/b/bundle [--split ...]``

Each member scores every image once straight and once mirrored (cached), so every combination below costs
only the fusion: each member alone, every member fused with flip TTA, and the first k members for
k = 2..N with and without flip; with ``--last-weight 2 3`` also all N with flip, the last member's views
weighing 2 (3) in the fusion (for a member of another architecture); with ``--extra-sizes 192`` each member
also scores every image resized to 192 px (multi-scale TTA), and rows fuse those views too. Fusion is
``training.ensemble.fuse_views`` (exactly what an ensemble bundle runs). Line figures are at each row's
own best-F1 per-class point calibrated on the same images (optimistic, the same for every row). Prints a
Markdown table; never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.bench_tta import Views, row, score_views  # noqa: E402
from datasets.readers import read_dataset  # noqa: E402
from datasets.split import apply_split, read_split  # noqa: E402
from training.bundle import load_bundle  # noqa: E402
from training.ensemble import fuse_views  # noqa: E402
from training.evaluation import Prediction, ground_truth_from_records  # noqa: E402
from training.inference import read_image  # noqa: E402
from training.manifest import FusionSpec  # noqa: E402


def fused(
    members: list[tuple[Views, int, float]], images: list[np.ndarray], fusion: FusionSpec, *, flip: bool
) -> list[Prediction]:
    """Per image: WBF over every member's straight view (and mirrored view with ``flip``), each view
    weighted by its member's weight."""
    preds = []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        views, weights = [], []
        for member_views, size, weight in members:
            straight, mirrored = member_views[i]
            views.append((straight, size, False))
            weights.append(weight)
            if flip:
                views.append((mirrored, size, True))
                weights.append(weight)
        boxes, scores, labels = fuse_views(views, weights=weights, fusion=fusion)
        preds.append(Prediction(boxes * [w, h, w, h], scores, labels))
    return preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", type=Path, nargs="+", help="member bundle folders (same classes)")
    parser.add_argument("--split", type=Path, default=Path("configs/splits/neu-det-dev.json"))
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("STEEL_DATA", "")) / "annotations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iou", type=float, nargs="+", default=[0.55, 0.7], help="WBF IoU thresholds")
    parser.add_argument(
        "--last-weight",
        type=float,
        nargs="+",
        default=[1.0],
        help="WBF weights to try for the last member (the others weigh 1), e.g. another architecture",
    )
    parser.add_argument(
        "--extra-sizes",
        type=int,
        nargs="*",
        default=[],
        help="multi-scale TTA: each member also scores the images at these input sizes (multiples of 32)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundles = [load_bundle(path) for path in args.members]
    names = bundles[0].class_names
    _, val = apply_split(read_dataset(args.data, class_names=names), read_split(args.split))
    images = [read_image(str(r.path)) for r in val.images]
    gts = ground_truth_from_records(val.images, names)
    members = []
    for path, bundle in zip(args.members, bundles, strict=True):
        views = score_views(bundle.model, images, bundle.image_size, bundle.in_channels)
        members.append((views, bundle.image_size, 1.0))
        print(f"scored {path} ({bundle.version})", file=sys.stderr, flush=True)
    scaled = [
        [(score_views(b.model, images, size, b.in_channels), size, 1.0) for size in args.extra_sizes]
        for b in bundles
    ]
    print(f"{len(images)} images; line figures at best-F1 points\n")
    print("| members | flip | WBF IoU | mAP@0.5 | mAP@0.5:0.95 | crazing AP50 | rolled-in AP50 "
          "| reject recall | worst class | stray/100 |")  # fmt: skip
    print("|---" * 10 + "|")
    for iou in args.iou:
        fusion = FusionSpec(conf_type="avg", iou_thr=iou)
        for i, path in enumerate(args.members):
            preds = fused([members[i]], images, fusion, flip=True)
            print(row(f"{path} | yes | {iou}", gts, preds, names), flush=True)
        for k in range(2, len(members) + 1):
            for flip in (False, True):
                preds = fused(members[:k], images, fusion, flip=flip)
                label = f"first {k} | {'yes' if flip else 'no'} | {iou}"
                print(row(label, gts, preds, names), flush=True)
        for weight in (w for w in args.last_weight if w != 1.0):
            views, size, _ = members[-1]
            preds = fused([*members[:-1], (views, size, weight)], images, fusion, flip=True)
            label = f"all {len(members)}, last weighs {weight} | yes | {iou}"
            print(row(label, gts, preds, names), flush=True)
        if args.extra_sizes:
            sizes = "+".join(str(s) for s in [bundles[0].image_size, *args.extra_sizes])
            for i, path in enumerate(args.members):
                preds = fused([members[i], *scaled[i]], images, fusion, flip=True)
                print(row(f"{path} at {sizes} | yes | {iou}", gts, preds, names), flush=True)
            every = [view for i in range(len(members)) for view in (members[i], *scaled[i])]
            preds = fused(every, images, fusion, flip=True)
            print(row(f"all {len(members)} at {sizes} | yes | {iou}", gts, preds, names), flush=True)


if __name__ == "__main__":
    main()
