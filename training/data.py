"""From the data config to train/val image records: read, validate, split (or verify a split file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets.model import AnnotatedSet, ImageRecord
from datasets.readers import read_dataset
from datasets.settings import data_root
from datasets.split import apply_split, make_split, read_split, verify_split, write_split
from training.background import background_records
from training.config import DataConfig


@dataclass
class PreparedData:
    train: list[ImageRecord]
    val: list[ImageRecord]
    class_names: list[str]
    split_info: dict[str, Any]  # file name and sha256, recorded in the bundle manifest
    dataset: AnnotatedSet


def annotations_path(cfg: DataConfig) -> Path:
    return Path(cfg.path) if cfg.path else data_root() / "annotations"


def prepare_data(cfg: DataConfig, *, out_dir: Path | None, write: bool = True) -> PreparedData:
    """Read the annotations, then use ``split_file`` (verified by content hash) or make a seeded split
    and write it to ``out_dir/split.json`` so the run can prove which images it trained on."""
    aset = read_dataset(
        annotations_path(cfg), format=cfg.format, images_dir=cfg.images, class_names=cfg.classes
    )
    errors = [p for p in aset.problems if p.severity == "error"]
    if errors:
        details = "\n".join(str(p) for p in errors[:10])
        raise ValueError(
            f"{len(errors)} annotation errors in {aset.source}; fix them or audit first:\n{details}"
        )
    if cfg.split_file:
        split = read_split(cfg.split_file)
        problems = verify_split(split, aset)
        if problems:
            raise ValueError(
                f"{cfg.split_file}: split does not match the data:\n"
                + "\n".join(str(p) for p in problems[:10])
            )
        split_path: Path | None = Path(cfg.split_file)
    else:
        split = make_split(aset, val_fraction=cfg.val_fraction, seed=cfg.split_seed)
        split_path = (out_dir / "split.json") if out_dir else None
        if split_path and write:
            write_split(split, split_path)
    train_set, val_set = apply_split(aset, split)
    train = train_set.images[: cfg.subset] if cfg.subset else train_set.images
    background, background_info = background_records(
        cfg.background, train_sources={im.name for im in train_set.images}, n_train=len(train)
    )
    train = [*train, *background]
    val = val_set.images[: max(1, cfg.subset // 4)] if cfg.subset else val_set.images
    info = {
        "file": split_path.name if split_path else None,
        "sha256": split.split_sha256,
        "train_images": len(train_set.images),
        "val_images": len(val_set.images),
        **({"background": background_info} if background_info else {}),
    }
    return PreparedData(train=train, val=val, class_names=list(cfg.classes), split_info=info, dataset=aset)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
