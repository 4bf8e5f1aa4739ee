"""Dataset audit: counts, box statistics and the label problems a reader cannot see on its own.

A reader checks one record at a time (numbers, geometry, labels, files). The audit looks across the
set: how boxes are distributed, which boxes disagree with the class in their file name, which boxes
repeat, and which images are (near) copies of each other or of another set's images (train/test
leakage). Audit sections are facts to review; only the reader's errors make a set unusable, so
``errors`` counts problems of severity ``error`` and the audit itself adds only warnings.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from datasets.dhash import detail_signature, dhash_array, near_duplicates, read_gray
from datasets.model import AnnotatedSet, Box, ImageRecord
from datasets.problems import Problem

DUPLICATE_TOLERANCE_PX = 1e-6
DEFAULT_NEAR_DUP_DISTANCE = 4
DEFAULT_MIN_CORRELATION = 0.9
_SIZE_FIELDS = ("width", "height", "area")


@dataclass(slots=True)
class AuditResult:
    """Everything the audit found; :meth:`to_dict` is the ``steel data audit --json`` object."""

    source: str
    format: str
    images: int
    boxes: int
    class_names: list[str]
    per_class: dict[str, int]
    problems: list[dict[str, str]]
    errors: int
    warnings: int
    box_stats: dict[str, Any]
    boxes_per_image: dict[str, Any]
    label_filename_mismatch: dict[str, Any]
    duplicate_boxes: list[dict[str, Any]]
    near_duplicates: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Fingerprints:
    """dHash and detail signature per hashed image, plus the images that could not be decoded."""

    hashes: dict[str, int] = field(default_factory=dict)
    signatures: dict[str, np.ndarray] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    unreadable: list[ImageRecord] = field(default_factory=list)


def audit(
    aset: AnnotatedSet,
    *,
    against: AnnotatedSet | None = None,
    near_dup_distance: int | None = DEFAULT_NEAR_DUP_DISTANCE,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
) -> AuditResult:
    """Audit one annotated set, optionally checking its images against another set's.

    Args:
        aset: the set to audit (its reader problems are carried over).
        against: a second set (e.g. the held-out test split); pairs of near-identical images across
            the two sets are reported as leakage warnings.
        near_dup_distance: dHash Hamming distance (of 64 bits) that makes a candidate pair; None skips
            the image comparison (no files are read).
        min_correlation: detail-signature correlation that confirms a candidate as a near duplicate
            (see :mod:`datasets.dhash` for why the hash alone is not enough).
    """
    problems = list(aset.problems)
    near: dict[str, Any] = {}
    if near_dup_distance is not None:
        near, extra = _near_duplicate_section(aset, against, near_dup_distance, min_correlation)
        problems.extend(extra)
    return AuditResult(
        source=aset.source,
        format=aset.format,
        images=len(aset.images),
        boxes=aset.num_boxes,
        class_names=list(aset.class_names),
        per_class=aset.per_class(),
        problems=[p.to_dict() for p in problems],
        errors=sum(p.severity == "error" for p in problems),
        warnings=sum(p.severity == "warning" for p in problems),
        box_stats=box_stats(aset),
        boxes_per_image=boxes_per_image(aset),
        label_filename_mismatch=label_filename_mismatch(aset),
        duplicate_boxes=duplicate_boxes(aset),
        near_duplicates=near,
    )


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "min": float(min(values)),
        "median": float(statistics.median(values)),
        "mean": float(statistics.fmean(values)),
        "max": float(max(values)),
    }


def _size_summary(boxes: list[Box]) -> dict[str, dict[str, float]]:
    return {name: _summary([float(getattr(b, name)) for b in boxes]) for name in _SIZE_FIELDS}


def box_stats(aset: AnnotatedSet) -> dict[str, Any]:
    """Width, height and area (pixels) summaries, overall and per class (every known class listed)."""
    boxes = [b for im in aset.images for b in im.boxes]
    by_class: dict[str, list[Box]] = {name: [] for name in aset.class_names}
    for b in boxes:
        by_class.setdefault(b.label, []).append(b)
    return {
        "overall": _size_summary(boxes),
        "per_class": {name: _size_summary(bs) for name, bs in by_class.items()},
    }


def boxes_per_image(aset: AnnotatedSet) -> dict[str, Any]:
    """Histogram ``{boxes in an image: number of images}``, the mean, and the images with no boxes."""
    counts = [len(im.boxes) for im in aset.images]
    empty = sorted(im.name for im in aset.images if not im.boxes)
    return {
        "histogram": {str(k): v for k, v in sorted(Counter(counts).items())},
        "mean": float(statistics.fmean(counts)) if counts else 0.0,
        "max": max(counts, default=0),
        "images_without_boxes": len(empty),
        "images_without_boxes_names": empty,
    }


def file_class(name: str, class_names: tuple[str, ...] | list[str]) -> str | None:
    """The class a file name starts with (``rolled-in_scale_12.jpg`` -> ``rolled-in_scale``), else None.

    The longest matching class wins, and it must be followed by ``_``, ``-``, ``.``, a space or the end.
    """
    stem = name.rsplit("/", 1)[-1]
    best = None
    for cls in class_names:
        if stem.startswith(cls) and (len(stem) == len(cls) or stem[len(cls)] in "_-. "):
            if best is None or len(cls) > len(best):
                best = cls
    return best


def label_filename_mismatch(aset: AnnotatedSet) -> dict[str, Any]:
    """Boxes whose label differs from the class prefix of their image's file name.

    Not an error: NEU-DET labels come from each object's ``<name>`` and a scratches image can hold an
    inclusion. Reported so a reviewer can confirm them (188 boxes in 123 files on the full NEU-DET).
    """
    items = []
    by_pair: Counter[str] = Counter()
    prefixed = 0
    for im in aset.images:
        expected = file_class(im.name, aset.class_names)
        if expected is None:
            continue
        prefixed += 1
        other = Counter(b.label for b in im.boxes if b.label != expected)
        for label, count in sorted(other.items()):
            items.append(
                {
                    "image": im.name,
                    "file": im.origin.file,
                    "file_class": expected,
                    "label": label,
                    "count": count,
                }
            )
            by_pair[f"{expected} -> {label}"] += count
    return {
        "images_with_class_prefix": prefixed,
        "boxes": sum(it["count"] for it in items),
        "files": len({it["image"] for it in items}),
        "by_pair": dict(sorted(by_pair.items())),
        "items": items,
    }


def duplicate_boxes(aset: AnnotatedSet, tolerance: float = DUPLICATE_TOLERANCE_PX) -> list[dict[str, Any]]:
    """Boxes repeated within one image: same label and every coordinate within ``tolerance`` pixels.

    Returns one entry per repeated box with ``count`` (>= 2) copies, in image order.
    """
    found = []
    for im in aset.images:
        groups: dict[str, list[list[Any]]] = defaultdict(list)  # label -> [[box, count], ...]
        for box in im.boxes:
            for group in groups[box.label]:
                if all(abs(a - b) <= tolerance for a, b in zip(group[0].xyxy, box.xyxy, strict=True)):
                    group[1] += 1
                    break
            else:
                groups[box.label].append([box, 1])
        for label in sorted(groups):
            for box, count in groups[label]:
                if count > 1:
                    found.append(
                        {
                            "image": im.name,
                            "file": im.origin.file,
                            "label": label,
                            "xyxy": [float(v) for v in box.xyxy],
                            "count": count,
                        }
                    )
    return found


def _fingerprint(aset: AnnotatedSet) -> _Fingerprints:
    fp = _Fingerprints()
    for im in aset.images:
        if im.path is None:  # the reader has already reported the missing or unreadable file
            continue
        try:
            gray = read_gray(im.path)
        except (ValueError, OSError):
            fp.unreadable.append(im)
            continue
        fp.hashes[im.name] = dhash_array(gray)
        fp.signatures[im.name] = detail_signature(gray)
        fp.sha256[im.name] = im.sha256
    return fp


def _confirmed(
    pairs: list[tuple[str, str, int]], fa: _Fingerprints, fb: _Fingerprints, min_correlation: float
) -> tuple[list[dict[str, Any]], int]:
    kept, rejected = [], 0
    for a, b, dist in pairs:
        corr = float(fa.signatures[a] @ fb.signatures[b])
        identical = bool(fa.sha256[a]) and fa.sha256[a] == fb.sha256[b]
        if identical or corr >= min_correlation:
            kept.append(
                {"a": a, "b": b, "distance": dist, "correlation": round(corr, 4), "identical": identical}
            )
        else:
            rejected += 1
    return kept, rejected


def _near_duplicate_section(
    aset: AnnotatedSet, against: AnnotatedSet | None, max_distance: int, min_correlation: float
) -> tuple[dict[str, Any], list[Problem]]:
    fa = _fingerprint(aset)
    within, rejected = _confirmed(near_duplicates(fa.hashes, max_distance), fa, fa, min_correlation)
    section: dict[str, Any] = {
        "max_distance": max_distance,
        "min_correlation": min_correlation,
        "hashed": len(fa.hashes),
        "within": within,
        "candidates_rejected": rejected,
        "against": None,
    }
    records = aset.by_name()
    problems = [
        Problem(
            "warning",
            im.origin.file,
            im.origin.item,
            "image",
            f"cannot decode {im.path} for near-duplicate check",
        )
        for im in fa.unreadable
    ]
    for pair in within:
        im = records[pair["a"]]
        problems.append(Problem("warning", im.origin.file, im.origin.item, "image", _dup_message(pair, "")))
    if against is not None:
        fb = _fingerprint(against)
        between, rejected_b = _confirmed(
            near_duplicates(fa.hashes, max_distance, against=fb.hashes), fa, fb, min_correlation
        )
        section["against"] = {
            "source": against.source,
            "hashed": len(fb.hashes),
            "pairs": between,
            "candidates_rejected": rejected_b,
        }
        for pair in between:
            im = records[pair["a"]]
            problems.append(
                Problem(
                    "warning", im.origin.file, im.origin.item, "image", _dup_message(pair, against.source)
                )
            )
    return section, problems


def _dup_message(pair: dict[str, Any], other_source: str) -> str:
    kind = "identical to" if pair["identical"] else "near-duplicate of"
    where = f" in {other_source}" if other_source else ""
    return (
        f"{pair['a']} is {kind} {pair['b']}{where} "
        f"(dHash distance {pair['distance']}, detail correlation {pair['correlation']:.3f})"
    )
