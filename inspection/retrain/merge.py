"""The challenger's training data: the base set replayed, earlier snapshots, and this run's new data.

The trainer reads one annotation file with one split file, so the merged set is written as a VoTT JSON
export whose ``images/`` folder holds symbolic links to the real files (nothing is copied), and a split file
whose train side is the training data and whose val side is the fixed set (the trainer evaluates on it once,
at the end, to report; it selects nothing with it). Every image whose content is in the fixed set is
dropped from the training side, whatever its name: the fixed set is never trained on.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets.dhash import read_gray
from datasets.model import AnnotatedSet, ImageRecord
from datasets.readers import read_dataset
from datasets.settings import data_root
from datasets.split import Split, apply_split, read_split, write_split
from datasets.writers.vott_json import write_vott_json
from inspection.retrain.collect import Snapshot
from inspection.retrain.config import DataSourceConfig
from inspection.retrain.leakage import FixedSetGuard, build_guard

EXPORT_NAME = "train-export.json"
SPLIT_NAME = "split.json"


def read_annotations(cfg: DataSourceConfig, class_names: Sequence[str]) -> AnnotatedSet:
    path = Path(cfg.path) if cfg.path else data_root() / "annotations"
    aset = read_dataset(path, format=cfg.format, images_dir=cfg.images, class_names=list(class_names))
    errors = [p for p in aset.problems if p.severity == "error"]
    if errors:
        raise ValueError(f"{path}: {len(errors)} annotation errors, e.g. {errors[0]}")
    return aset


def read_source(
    cfg: DataSourceConfig, class_names: Sequence[str], *, aset: AnnotatedSet | None = None
) -> list[ImageRecord]:
    """The configured side of a labelled set, checked against its split file, optionally sampled
    (``aset``: the set already read from the same annotations)."""
    aset = aset if aset is not None else read_annotations(cfg, class_names)
    records = aset.images
    if cfg.side != "all" and cfg.split_file is not None:  # the config refuses a side without a split file
        train, val = apply_split(aset, read_split(cfg.split_file))
        records = train.images if cfg.side == "train" else val.images
    if cfg.max_images is not None and cfg.max_images < len(records):
        records = sorted(random.Random(cfg.seed).sample(records, cfg.max_images), key=lambda r: r.name)
    return list(records)


@dataclass(frozen=True)
class DataSets:
    """What a run trains and judges on, besides the new data.

    ``base``: replayed into training; ``holdout``: base-side images kept out of the challenger's training to
    calibrate its thresholds on; ``fixed``: the (possibly sampled) fixed set both models are judged on;
    ``guard``: the whole fixed side, hashed, that no training image may overlap.
    """

    base: list[ImageRecord]
    holdout: list[ImageRecord]
    fixed: list[ImageRecord]
    guard: FixedSetGuard


def read_data(
    base: DataSourceConfig,
    fixed: DataSourceConfig,
    class_names: Sequence[str],
    *,
    holdout_images: int,
    holdout_seed: int = 0,
) -> DataSets:
    """Read base and fixed set once, hold out the calibration images, hash the whole fixed side."""
    base_set = read_annotations(base, class_names)
    same = (base.path, base.format, base.images) == (fixed.path, fixed.format, fixed.images)
    fixed_set = base_set if same else read_annotations(fixed, class_names)
    base_side = read_source(base.model_copy(update={"max_images": None}), class_names, aset=base_set)
    rng = random.Random(holdout_seed)
    holdout = sorted(rng.sample(base_side, min(holdout_images, len(base_side) // 2)), key=lambda r: r.name)
    held = {r.name for r in holdout}
    train_side = [r for r in base_side if r.name not in held]
    if base.max_images is not None and base.max_images < len(train_side):
        train_side = sorted(
            random.Random(base.seed).sample(train_side, base.max_images), key=lambda r: r.name
        )
    whole_fixed = read_source(fixed.model_copy(update={"max_images": None}), class_names, aset=fixed_set)
    return DataSets(
        base=train_side,
        holdout=holdout,
        fixed=read_source(fixed, class_names, aset=fixed_set),
        guard=build_guard(whole_fixed),
    )


@dataclass
class MergedData:
    export: Path
    split_file: Path
    train_images: int
    val_images: int
    counts: dict[str, int]  # images per origin: base, previous_snapshots, new, dropped_in_fixed_set


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(target.resolve(), link)
    except OSError:  # file systems without symbolic links
        shutil.copyfile(target, link)


def build_training_set(
    *,
    base: Sequence[ImageRecord],
    previous: Sequence[Snapshot],
    new: Snapshot,
    fixed: Sequence[ImageRecord],
    class_names: Sequence[str],
    out_dir: Path,
    guard: FixedSetGuard | None = None,
    holdout: Sequence[ImageRecord] = (),
) -> MergedData:
    """Write the merged export and split into ``out_dir`` (replaced). ``previous`` oldest first: a later
    snapshot's image replaces an earlier one of the same name (a frame reviewed again). Every image (base
    ones too: another dataset may hold copies across its split; snapshots cut before the fixed-set check
    existed) is checked against ``guard`` for near-duplicates; the calibration ``holdout`` never trains."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    kept_out = {r.sha256 for r in fixed} | {r.sha256 for r in holdout} | set(guard.sha256 if guard else ())
    train: dict[str, ImageRecord] = {}
    counts = {"base": 0, "previous_snapshots": 0, "new": 0, "dropped_in_fixed_set": 0}
    groups = [("base", base)] + [("previous_snapshots", s.images) for s in previous] + [("new", new.train)]
    for origin, records in groups:
        for record in records:
            near = (
                guard is not None
                and record.path is not None
                and guard.near_duplicate(read_gray(record.path)) is not None
            )
            if record.sha256 in kept_out or near:
                counts["dropped_in_fixed_set"] += 1
                continue
            train[record.name] = record
            counts[origin] += 1
    clash = sorted(set(train) & {r.name for r in fixed})
    if clash:
        raise ValueError(f"images named like fixed-set images but with other content: {clash[:5]}")
    images = list(train.values()) + list(fixed)
    for record in images:
        if record.path is None:
            raise ValueError(f"{record.name}: image file missing")
        _link(record.path, out_dir / "images" / record.name)
    merged = AnnotatedSet(images=images, class_names=tuple(class_names), source=str(out_dir), format="merged")
    export = write_vott_json(merged, out_dir / EXPORT_NAME, project_name="retrain-training-set")
    total = len(images)
    split = Split(
        seed=0,
        val_fraction=round(len(fixed) / total, 6) if total else 0.0,
        class_names=tuple(class_names),
        train=dict(sorted((r.name, r.sha256) for r in train.values())),
        val=dict(sorted((r.name, r.sha256) for r in fixed)),
        source=str(export),
    )
    split_file = write_split(split, out_dir / SPLIT_NAME)
    return MergedData(export, split_file, len(train), len(fixed), counts)
