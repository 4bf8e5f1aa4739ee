"""Reproducible train/validation splits, written down with the content hash of every image.

A split is a pure function of the image names, their content and the seed: images are grouped by
content (byte-identical copies, such as NEU-DET's patches_101/patches_105, always land on the same
side, so they cannot leak from train into val), each group is put in the stratum of its first image's
dominant label, and within a stratum groups are ranked by ``sha256(seed:name)``. The first
``round(n * val_fraction)`` images of each stratum go to val. Input order never matters, and adding
an image moves no other image between sides unless a stratum's val quota changes.

The split file records ``sha256`` per image so :func:`verify_split` can tell when an image was
replaced after the split was made, and ``split_sha256`` (over seed, fraction, classes and both
lists) names the split itself in training logs and model bundles.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets.images import sha256_file
from datasets.model import AnnotatedSet, ImageRecord
from datasets.problems import Problem

SPLIT_FORMAT_VERSION = 1
STRATIFY = "dominant-label"
NO_BOXES = ""  # the stratum of images without boxes


class SplitError(ValueError):
    """A split cannot be made, read or applied; the message says which image or key."""


@dataclass(frozen=True, slots=True)
class Split:
    """Image names (with content hashes) for each side. ``train``/``val`` map name -> sha256, sorted."""

    seed: int
    val_fraction: float
    class_names: tuple[str, ...]
    train: dict[str, str]
    val: dict[str, str]
    source: str = ""

    def _hashed_content(self) -> dict[str, Any]:
        return {
            "version": SPLIT_FORMAT_VERSION,
            "stratify": STRATIFY,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "class_names": list(self.class_names),
            "train": [{"name": n, "sha256": h} for n, h in self.train.items()],
            "val": [{"name": n, "sha256": h} for n, h in self.val.items()],
        }

    @property
    def split_sha256(self) -> str:
        """Hash of everything but ``source`` (where the annotations were read is not part of the split)."""
        canonical = json.dumps(self._hashed_content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**self._hashed_content(), "source": self.source, "split_sha256": self.split_sha256}


def dominant_label(image: ImageRecord) -> str:
    """The most frequent box label (ties broken by name), or :data:`NO_BOXES`."""
    counts = Counter(b.label for b in image.boxes)
    if not counts:
        return NO_BOXES
    return min(counts, key=lambda label: (-counts[label], label))


def _content_hash(image: ImageRecord) -> str:
    if image.sha256:
        return image.sha256
    if image.path is None:
        raise SplitError(f"{image.name}: image file missing, cannot record its content hash")
    return sha256_file(image.path)


def _rank(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def make_split(aset: AnnotatedSet, *, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Split ``aset`` into train and val, stratified by each image's dominant label.

    Args:
        aset: the images to split (every image must have a file or a ``sha256``).
        val_fraction: share of each stratum's images that go to val, ``0 <= f < 1``.
        seed: any int; the same seed and images always give the same split.

    Raises:
        SplitError: a bad fraction, duplicate image names, or an image without content.
    """
    if not (0.0 <= val_fraction < 1.0) or not math.isfinite(val_fraction):
        raise SplitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    images = sorted(aset.images, key=lambda im: im.name)
    names = [im.name for im in images]
    if len(set(names)) != len(names):
        dup = sorted(n for n, c in Counter(names).items() if c > 1)
        raise SplitError(f"duplicate image names cannot be split: {dup[:5]}")
    hashes = {im.name: _content_hash(im) for im in images}

    groups: dict[str, list[ImageRecord]] = defaultdict(list)  # content hash -> images, in name order
    for im in images:
        groups[hashes[im.name]].append(im)
    strata: dict[str, list[list[ImageRecord]]] = defaultdict(list)
    for group in groups.values():
        strata[dominant_label(group[0])].append(group)

    val_names: set[str] = set()
    for stratum in sorted(strata):
        ranked = sorted(strata[stratum], key=lambda g: _rank(seed, g[0].name))
        quota = math.floor(sum(len(g) for g in ranked) * val_fraction + 0.5)
        taken = 0
        for group in ranked:
            if taken >= quota:
                break
            val_names.update(im.name for im in group)
            taken += len(group)
    return Split(
        seed=int(seed),
        val_fraction=float(val_fraction),
        class_names=tuple(aset.class_names),
        train={n: hashes[n] for n in names if n not in val_names},
        val={n: hashes[n] for n in names if n in val_names},
        source=aset.source,
    )


def write_split(split: Split, path: str | Path) -> Path:
    """Write the split as JSON with one image per line (same split, same bytes; small diffs)."""
    parts = []
    for key, value in split.to_dict().items():
        if key in ("train", "val") and value:
            body = ",\n".join(f"    {json.dumps(entry)}" for entry in value)
            parts.append(f"  {json.dumps(key)}: [\n{body}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="utf-8")
    return path


def _entries(data: dict[str, Any], side: str, path: Path) -> dict[str, str]:
    entries = data.get(side)
    if not isinstance(entries, list):
        raise SplitError(f"{path}: {side}: expected a list of {{name, sha256}}")
    out: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("sha256"), str)
        ):
            raise SplitError(f"{path}: {side}[{i}]: expected {{name: str, sha256: str}}, got {entry!r}")
        if entry["name"] in out:
            raise SplitError(f"{path}: {side}[{i}].name: {entry['name']!r} listed twice")
        out[entry["name"]] = entry["sha256"]
    return dict(sorted(out.items()))


def read_split(path: str | Path) -> Split:
    """Read a split file, checking its structure and that ``split_sha256`` matches its content.

    Raises:
        SplitError: unreadable or malformed file, an image on both sides, or a hash mismatch (edited by hand).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SplitError(f"{path}: cannot read split file: {exc}") from None
    if not isinstance(data, dict):
        raise SplitError(f"{path}: top level must be an object")
    if data.get("version") != SPLIT_FORMAT_VERSION:
        raise SplitError(f"{path}: version: expected {SPLIT_FORMAT_VERSION}, got {data.get('version')!r}")
    try:
        split = Split(
            seed=int(data["seed"]),
            val_fraction=float(data["val_fraction"]),
            class_names=tuple(str(c) for c in data["class_names"]),
            train=_entries(data, "train", path),
            val=_entries(data, "val", path),
            source=str(data.get("source", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SplitError):
            raise
        raise SplitError(f"{path}: missing or invalid key: {exc}") from None
    both = sorted(set(split.train) & set(split.val))
    if both:
        raise SplitError(f"{path}: images in both train and val: {both[:5]}")
    if data.get("split_sha256") != split.split_sha256:
        raise SplitError(
            f"{path}: split_sha256: file says {data.get('split_sha256')!r} but its content hashes to "
            f"{split.split_sha256!r} (edited by hand?)"
        )
    return split


def verify_split(split: Split, aset: AnnotatedSet) -> list[Problem]:
    """Errors for split images that are missing from ``aset`` or whose content changed; warnings for
    images of ``aset`` the split does not know and for different class names."""
    problems: list[Problem] = []
    records = aset.by_name()
    for side, entries in (("train", split.train), ("val", split.val)):
        for name, expected in entries.items():
            im = records.get(name)
            if im is None:
                problems.append(
                    Problem("error", aset.source, name, side, "image in the split is missing from the set")
                )
                continue
            actual = im.sha256 or (sha256_file(im.path) if im.path is not None else "")
            if actual != expected:
                what = f"now {actual[:12]}" if actual else "image file missing"
                problems.append(
                    Problem(
                        "error",
                        im.origin.file or aset.source,
                        name,
                        "sha256",
                        f"content changed since the split was made: split has {expected[:12]}, {what}",
                    )
                )
    known = set(split.train) | set(split.val)
    for im in aset.images:
        if im.name not in known:
            problems.append(
                Problem(
                    "warning", im.origin.file or aset.source, im.name, "split", "image is not in the split"
                )
            )
    if tuple(aset.class_names) != split.class_names:
        problems.append(
            Problem(
                "warning",
                aset.source,
                "",
                "class_names",
                f"set has {list(aset.class_names)}, split was made with {list(split.class_names)}",
            )
        )
    return problems


def apply_split(aset: AnnotatedSet, split: Split, *, check: bool = True) -> tuple[AnnotatedSet, AnnotatedSet]:
    """``(train, val)`` subsets of ``aset``; with ``check``, refuse when :func:`verify_split` finds errors.

    Raises:
        SplitError: ``check`` and an image is missing or changed (the message lists the first few).
    """
    if check:
        errors = [p for p in verify_split(split, aset) if p.severity == "error"]
        if errors:
            listed = "\n".join(f"  {p}" for p in errors[:10])
            more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
            raise SplitError(f"split does not match the images ({len(errors)} errors):\n{listed}{more}")
    return aset.subset(list(split.train)), aset.subset(list(split.val))
