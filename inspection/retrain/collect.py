"""Reviewed detections -> a dataset snapshot: training windows cut from the daemon's raw frames.

Which reviews: those with ``after < reviews.id <= up_to`` (the high-water mark of the last finished run,
and the newest review when the run started). A defect may be reviewed several times; the latest review
up to ``up_to`` wins.

What becomes an image: the daemon's frames are far larger than the model's input and are scored in tiles,
so each newly reviewed defect gets a window of ``window_px`` (the tile size) centred on it, cut from the
frame's raw pixels (``stored_raw_frame``: the sink keeps them beside the annotated copy). A window is labelled
with every defect visible in it, the frame's own and, for line-scan frames, those stored with an
overlapping frame of the same source and coil (mapped through strip coordinates):

* ``confirmed`` -> a box of the predicted class, ``relabelled`` -> a box of ``new_class``;
* ``rejected`` -> no box: a window around rejected defects only is a background image (steel that made the
  model raise a false alarm, now taught as defect-free);
* not reviewed -> the window is skipped (``unreviewed: skip``) or labelled as predicted (``predicted``).

A box counts in a window when at least ``min_visibility`` of it (or of the window, for a box larger than the
window) is inside. A defect already inside an earlier window of its frame gets no window of its own.

A window that shows any part of a fixed-set image (by the strip's provenance, or as a near-duplicate) is
refused (:mod:`.leakage`): the fixed set must never reach training.

The split into train and the new data's validation part is by **group**, not by window: all windows of one
coil (line-scan frames overlap, so windows of one coil share pixels), or of one frame when frames carry no
coil and no strip position, go to the same side.

The snapshot folder holds ``images/``, a VoTT JSON export of them (``new-data-export.json``, for annotators
and for the trainer), a split file with content hashes (``split.json``: its val side is the new data's
validation part) and ``snapshot.json`` (counts; written last, so its presence means the snapshot is whole).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy.orm import Session

from datasets.images import sha256_file
from datasets.model import AnnotatedSet, ImageRecord, Origin
from datasets.readers import read_dataset
from datasets.split import Split, apply_split, read_split, write_split
from datasets.writers.vott_json import write_vott_json
from inspection.retrain.config import CollectConfig
from inspection.retrain.leakage import FixedSetGuard
from inspection.retrain.windows import VisibleDefect, contains, label_window, place_window
from inspection.storage import retrain_store as store
from inspection.storage.paths import source_dir_name, stored_raw_frame
from inspection.storage.schema import Defect, Frame, Review

SNAPSHOT_MARKER = "snapshot.json"
EXPORT_NAME = "new-data-export.json"
SPLIT_NAME = "split.json"


@dataclass(frozen=True)
class ReviewRange:
    """Reviews with ``after < id <= up_to``."""

    after: int
    up_to: int


@dataclass
class Snapshot:
    """A collected snapshot: its images split into train and the new data's validation part."""

    dir: Path
    class_names: tuple[str, ...]
    train: list[ImageRecord]
    val: list[ImageRecord]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> list[ImageRecord]:
        return self.train + self.val

    @property
    def export(self) -> Path:
        return self.dir / EXPORT_NAME

    @property
    def split_file(self) -> Path:
        return self.dir / SPLIT_NAME


@dataclass
class _Cut:
    """What cutting windows produced: records, the split group of each, and why anything was skipped."""

    records: list[ImageRecord] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # image name -> split group
    skipped: Counter[str] = field(default_factory=Counter)
    frames: int = 0
    shared: int = 0  # defects already inside an earlier window of their frame


def verdict_counts(session: Session, reviews: ReviewRange) -> dict[str, int]:
    """How many reviews of each verdict lie in the range (every review row, repeats included)."""
    return store.verdict_counts(session, after=reviews.after, up_to=reviews.up_to)


def _status(defect: Defect, review: Review | None) -> tuple[str, str | None]:
    if review is None:
        return "unreviewed", defect.class_name
    if review.verdict == "rejected":
        return "rejected", None
    if review.verdict == "relabelled":
        return "positive", review.new_class
    return "positive", defect.class_name


def _visible_defects(session: Session, frame: Frame, up_to: int) -> list[VisibleDefect]:
    """The frame's own defects plus, for a line-scan frame, defects of overlapping frames (strip coords)."""
    placed = [(d, (d.x1, d.y1, d.x2, d.y2)) for d in store.frame_defects(session, frame.id)]
    top = frame.start_line or 0
    for d in store.strip_neighbour_defects(session, frame):  # strip boxes: the query keeps complete ones
        sx1, sy1, sx2, sy2 = (float(v) for v in (d.sx1, d.sy1, d.sx2, d.sy2) if v is not None)
        placed.append((d, (sx1, sy1 - top, sx2, sy2 - top)))
    latest = store.latest_reviews(session, [d.id for d, _ in placed], up_to=up_to)
    out = []
    for d, (x1, y1, x2, y2) in placed:
        status, label = _status(d, latest.get(d.id))
        out.append(VisibleDefect(d.id, (float(x1), float(y1), float(x2), float(y2)), status, label))
    return out


def split_group(frame: Frame) -> str:
    """The unit that goes whole to one side of the split: a coil of a source; a line-scan source without
    coils as a whole (its frames overlap); else the frame itself."""
    if frame.coil_id is not None:
        return f"{frame.source}|coil {frame.coil_id}"
    if frame.start_line is not None:
        return f"{frame.source}|strip"
    return f"{frame.source}|frame {frame.seq}"


def _read_raw(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image if image is not None and image.size else None


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    if not cv2.imwrite(str(tmp), image):
        raise OSError(f"cannot write {path}")
    os.replace(tmp, path)


def _per_class(records: Iterable[ImageRecord], class_names: Sequence[str]) -> dict[str, int]:
    counts = Counter(b.label for r in records for b in r.boxes)
    return {name: int(counts.get(name, 0)) for name in class_names}


# ---------------------------------------------------------------- the steps of a snapshot


def _anchors_by_frame(
    session: Session, reviews: ReviewRange
) -> tuple[list[int], dict[int, tuple[Frame, list[Defect]]]]:
    """The reviewed defects, and them grouped by frame (frame id order)."""
    touched = store.reviewed_defect_ids(session, after=reviews.after, up_to=reviews.up_to)
    by_frame: dict[int, tuple[Frame, list[Defect]]] = {}
    for defect, frame in store.defects_with_frames(session, touched):
        by_frame.setdefault(frame.id, (frame, []))[1].append(defect)
    return touched, by_frame


def _frame_windows(
    session: Session,
    frame: Frame,
    anchors: Sequence[Defect],
    *,
    up_to: int,
    class_names: Sequence[str],
    cfg: CollectConfig,
    guard: FixedSetGuard | None,
    out: _Cut,
    images_dir: Path,
) -> None:
    """Cut, label, check and write the windows of one frame's reviewed defects into ``out``."""
    image = _read_raw(stored_raw_frame(Path(cfg.frames_dir), frame.source, frame.seq))
    if image is None:
        out.skipped["no_raw_frame"] += len(anchors)
        return
    height, width = image.shape[:2]
    if guard is not None and guard.near_duplicate(image) is not None:
        out.skipped["fixed_set_near_duplicate"] += len(anchors)  # the whole frame is a fixed-set image
        return
    visible = _visible_defects(session, frame, up_to)
    windows: list[tuple[int, int, int, int]] = []
    for anchor in anchors:
        xyxy = (anchor.x1, anchor.y1, anchor.x2, anchor.y2)
        if any(contains(w, xyxy) for w in windows):
            out.shared += 1  # already labelled in an earlier window of this frame
            continue
        window = place_window(xyxy, frame_wh=(width, height), window_px=cfg.window_px)
        x0, y0, x1, y1 = window
        pixels = np.ascontiguousarray(image[y0:y1, x0:x1])
        boxes, reason = label_window(window, visible, class_names=class_names, cfg=cfg)
        if boxes is not None and guard is not None:
            strip = (
                None if frame.start_line is None else (x0, frame.start_line + y0, x1, frame.start_line + y1)
            )
            reason = guard.overlap(source=frame.source, strip_window=strip, pixels=pixels)
        if boxes is None or reason is not None:
            out.skipped[str(reason)] += 1
            continue
        windows.append(window)
        name = window_image_name(frame.source, frame.seq, x0, y0)
        path = images_dir / name
        _write_png(path, pixels)
        out.records.append(
            ImageRecord(
                name=name,
                width=x1 - x0,
                height=y1 - y0,
                boxes=tuple(boxes),
                path=path,
                sha256=sha256_file(path),
                origin=Origin(file="inspection-db", item=f"frame {frame.id} defect {anchor.id}"),
            )
        )
        out.groups[name] = split_group(frame)
    out.frames += bool(windows)


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def split_by_group(
    records: Sequence[ImageRecord],
    groups: dict[str, str],
    *,
    val_fraction: float,
    seed: int,
    class_names: Sequence[str],
) -> Split:
    """Whole groups to one side: groups in a seeded order go to val until it holds ``val_fraction`` of the
    images; at least one group stays on the train side. One group only: no validation part at all."""
    members: dict[str, list[ImageRecord]] = {}
    for record in records:
        members.setdefault(groups[record.name], []).append(record)
    order = sorted(members, key=lambda g: _rank(seed, g))
    quota = round(len(records) * val_fraction)
    val: list[ImageRecord] = []
    for group in order[:-1]:  # the last group always trains
        if len(val) >= quota:
            break
        val.extend(members[group])
    val_names = {r.name for r in val}
    return Split(
        seed=seed,
        val_fraction=val_fraction,
        class_names=tuple(class_names),
        train=dict(sorted((r.name, r.sha256) for r in records if r.name not in val_names)),
        val=dict(sorted((r.name, r.sha256) for r in val)),
    )


def _stats(
    session: Session,
    reviews: ReviewRange,
    touched: Sequence[int],
    cut: _Cut,
    parts: tuple[AnnotatedSet, AnnotatedSet, Split],
    class_names: Sequence[str],
    out_dir: Path,
) -> dict[str, Any]:
    train, val, split = parts

    def groups_of(aset: AnnotatedSet) -> int:
        return len({cut.groups[r.name] for r in aset.images})

    return {
        "dir": str(out_dir),
        "reviews": {"after": reviews.after, "up_to": reviews.up_to, **verdict_counts(session, reviews)},
        "defects_reviewed": len(touched),
        "defects_in_shared_windows": cut.shared,
        "frames": cut.frames,
        "images": len(cut.records),
        "background_images": sum(1 for r in cut.records if not r.boxes),
        "boxes_per_class": _per_class(cut.records, class_names),
        "train": {
            "images": len(train.images),
            "groups": groups_of(train),
            "boxes_per_class": _per_class(train.images, class_names),
        },
        "val": {
            "images": len(val.images),
            "groups": groups_of(val),
            "boxes_per_class": _per_class(val.images, class_names),
        },
        "split_by": "coil or frame group (whole groups on one side)",
        "groups": dict(sorted(cut.groups.items())),
        "skipped": dict(sorted(cut.skipped.items())),
        "split_sha256": split.split_sha256,
        "export": EXPORT_NAME,
    }


def collect_snapshot(
    session: Session,
    *,
    reviews: ReviewRange,
    class_names: Sequence[str],
    cfg: CollectConfig,
    out_dir: Path,
    name: str = "new-data",
    guard: FixedSetGuard | None = None,
) -> Snapshot:
    """Cut, label, check against the fixed set (``guard``), split by group and write the snapshot of
    ``reviews`` into ``out_dir`` (replaced if present)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a half-written snapshot of a killed run: start it again
    (out_dir / "images").mkdir(parents=True)
    touched, by_frame = _anchors_by_frame(session, reviews)
    cut = _Cut()
    for frame, anchors in by_frame.values():
        _frame_windows(
            session,
            frame,
            anchors,
            up_to=reviews.up_to,
            class_names=class_names,
            cfg=cfg,
            guard=guard,
            out=cut,
            images_dir=out_dir / "images",
        )
    aset = AnnotatedSet(
        images=cut.records, class_names=tuple(class_names), source=str(out_dir), format="retrain"
    )
    split = split_by_group(
        cut.records, cut.groups, val_fraction=cfg.val_fraction, seed=cfg.seed, class_names=class_names
    )
    write_split(split, out_dir / SPLIT_NAME)
    write_vott_json(aset, out_dir / EXPORT_NAME, project_name=name)
    train, val = apply_split(aset, split)
    stats = _stats(session, reviews, touched, cut, (train, val, split), class_names, out_dir)
    marker = out_dir / SNAPSHOT_MARKER
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, marker)
    return Snapshot(out_dir, tuple(class_names), train.images, val.images, stats)


def load_snapshot(out_dir: Path, class_names: Sequence[str]) -> Snapshot | None:
    """A snapshot written whole by :func:`collect_snapshot` (None when absent or half-written), its images
    checked against the split file's content hashes."""
    out_dir = Path(out_dir)
    marker = out_dir / SNAPSHOT_MARKER
    if not marker.is_file():
        return None
    stats = json.loads(marker.read_text(encoding="utf-8"))
    aset = read_dataset(out_dir / EXPORT_NAME, format="vott-json", class_names=list(class_names))
    errors = [p for p in aset.problems if p.severity == "error"]
    if errors:
        raise ValueError(f"{out_dir}: snapshot does not read back cleanly: {errors[0]}")
    train, val = apply_split(aset, read_split(out_dir / SPLIT_NAME))
    return Snapshot(out_dir, tuple(class_names), train.images, val.images, stats)


def window_image_name(source: str, seq: int, x0: int, y0: int) -> str:
    """``<source folder>-<seq>-<x0>-<y0>.png``: unique per source (the evidence folder's name carries a
    hash of the whole source name), so ``cam/1`` and ``cam_1`` never overwrite each other's windows."""
    return f"{source_dir_name(source)}-{seq}-{x0}-{y0}.png"
