"""Figures behind the README's retraining section (issue 17): what the gate now keeps out and measures.

1. fixed-set images among the demo strip's placements (configs/inspection.yaml);
2. new-data validation windows that overlap a training window of the same coil, per-window split (before)
   against the split by coil (now), on five simulated coils of training-side images;
3. the shipped model on the whole fixed set, per class: reject recall and false rejects per image at its
   manifest threshold and at thresholds calibrated for recall 0.9 on 60 held-out base images.

    python bench/bench_retrain_gate.py        # about a minute on 2 CPU cores
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import yaml

from datasets.model import AnnotatedSet
from datasets.settings import REPO_ROOT
from datasets.split import apply_split, make_split, read_split
from inspection.retrain.config import RetrainConfig
from inspection.retrain.evaluate import score_bundle
from inspection.retrain.merge import read_data
from inspection.retrain.operating import bundle_thresholds, calibrate_thresholds, rejects_at
from inspection.sources.strip_sim import StripSimulator
from tests.inspection.retrain_fixtures import CLASSES, World, store_strip
from tests.inspection.test_retrain_gate import TRAIN_STRIP, _strip_window, collect
from training.bundle import load_bundle


def demo_strip() -> None:
    val = set(read_split(REPO_ROOT / "configs/splits/neu-det-dev.json").val)
    source = yaml.safe_load((REPO_ROOT / "configs/inspection.yaml").read_text(encoding="utf-8"))["source"]
    placed = StripSimulator.from_spec(source.partition(":")[2]).placements()
    print(
        f"demo strip: {sum(p.image in val for p in placed)} of {len(placed)} placements are fixed-set images"
    )


def _overlapping(train: list, val: list) -> int:
    windows = [_strip_window(r.name, 200) for r in train]
    count = 0
    for r in val:
        prefix, (x0, y0, x1, y1) = _strip_window(r.name, 200)
        count += any(p == prefix and w[0] < x1 and x0 < w[2] and w[1] < y1 and y0 < w[3] for p, w in windows)
    return count


def split_overlap() -> None:
    world = World(Path(tempfile.mkdtemp()), {})
    try:
        for seed in (11, 12, 13, 14, 15):
            store_strip(world, TRAIN_STRIP.format(seed=seed), coil=f"c{seed}")
        snap = collect(world, "snap", guard=None, val_fraction=0.3)
    finally:
        world.repo.dispose()
    aset = AnnotatedSet(images=snap.images, class_names=tuple(CLASSES), source="bench", format="retrain")
    train, val = apply_split(aset, make_split(aset, val_fraction=0.3, seed=0))  # the split before issue 17
    before, after = _overlapping(train.images, val.images), _overlapping(snap.train, snap.val)
    print(
        f"new data, {len(snap.images)} windows of 5 coils: per-window split {before} of {len(val.images)} "
        f"val windows overlap a train window; split by coil {after} of {len(snap.val)}"
    )


def operating_points() -> None:
    torch.set_num_threads(2)
    cfg = RetrainConfig.model_validate({"device": "cpu"})
    data = read_data(cfg.base, cfg.fixed_set, CLASSES, holdout_images=60)
    bundle = load_bundle(REPO_ROOT / "models" / "neu-yolo-n")
    started = time.perf_counter()
    on_holdout = score_bundle(bundle, data.holdout, device="cpu")
    on_fixed = score_bundle(bundle, data.fixed, device="cpu")
    manifest = bundle_thresholds(bundle)
    calibrated = calibrate_thresholds(on_holdout.matched, target_recall=0.9, fallback=manifest)
    before, after = rejects_at(on_fixed.matched, manifest), rejects_at(on_fixed.matched, calibrated)
    print(
        f"{bundle.version} on the fixed set ({len(data.fixed)} images; scored in "
        f"{time.perf_counter() - started:.0f} s): class, threshold / reject recall / false rejects per "
        "image, at the manifest threshold -> calibrated for recall 0.9 on 60 held-out base images"
    )
    for name in CLASSES:
        a, b = before[name], after[name]
        print(
            f"  {name:<16} {a.threshold:.3f} / {a.recall:.3f} / {a.false_rejects_per_image:.3f}"
            f"  ->  {b.threshold:.3f} / {b.recall:.3f} / {b.false_rejects_per_image:.3f}"
        )


if __name__ == "__main__":
    demo_strip()
    split_overlap()
    operating_points()
