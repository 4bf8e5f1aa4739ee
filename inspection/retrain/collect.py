"""Reviewed detections -> a dataset snapshot: training windows cut from the daemon's raw frames.

Which reviews: those with ``after < reviews.id <= up_to`` (the high-water mark of the last finished run,
and the newest review when the run started). A defect may be reviewed several times; the latest review
up to ``up_to`` wins.

What becomes an image: the daemon's frames are far larger than the model's input and are scored in tiles,
so each newly reviewed defect gets a window of ``window_px`` (the tile size) centred on it, cut from the
frame's raw pixels (``raw_frame_path``: the sink keeps them beside the annotated copy). A window is labelled
with every defect visible in it, the frame's own and, for line-scan frames, those stored with an
overlapping frame of the same source and coil (mapped through strip coordinates):

* ``confirmed`` -> a box of the predicted class, ``relabelled`` -> a box of ``new_class``;
* ``rejected`` -> no box: a window around rejected defects only is a background image (steel that made the
  model raise a false alarm, now taught as defect-free);
* not reviewed -> the window is skipped (``unreviewed: skip``) or labelled as predicted (``predicted``).

A box counts in a window when at least ``min_visibility`` of it (or of the window, for a box larger than the
window) is inside. A defect already inside an earlier window of its frame gets no window of its own.

The snapshot folder holds ``images/``, a VoTT JSON export of them (``new-data-export.json``, for annotators
and for the trainer), a split file with content hashes (``split.json``: its val side is the new data's
validation part) and ``snapshot.json`` (counts; written last, so its presence means the snapshot is whole).
"""

from __future__ import annotations

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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from datasets.images import sha256_file
from datasets.model import AnnotatedSet, Box, ImageRecord, Origin
from inspection.paths import raw_frame_path, safe_name
from inspection.retrain.config import CollectConfig
from inspection.storage.schema import Defect, Frame, Review

SNAPSHOT_MARKER = "snapshot.json"
EXPORT_NAME = "new-data-export.json"
SPLIT_NAME = "split.json"
_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class ReviewRange:
    """Reviews with ``after < id <= up_to``."""

    after: int
    up_to: int


@dataclass(frozen=True)
class VisibleDefect:
    """A defect as seen in one frame: ``xyxy`` in that frame's pixels; ``label`` None when rejected."""

    defect_id: int
    xyxy: tuple[float, float, float, float]
    status: str  # "positive", "rejected" or "unreviewed"
    label: str | None


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


def verdict_counts(session: Session, reviews: ReviewRange) -> dict[str, int]:
    """How many reviews of each verdict lie in the range (every review row, repeats included)."""
    rows = session.execute(
        select(Review.verdict, func.count())
        .where(Review.id > reviews.after, Review.id <= reviews.up_to)
        .group_by(Review.verdict)
    ).all()
    counts = {"confirmed": 0, "relabelled": 0, "rejected": 0}
    counts.update({verdict: int(n) for verdict, n in rows})
    return counts


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _latest_reviews(session: Session, defect_ids: Sequence[int], up_to: int) -> dict[int, Review]:
    latest: dict[int, Review] = {}
    for chunk in _chunks(list(defect_ids)):
        stmt = select(Review).where(Review.defect_id.in_(chunk), Review.id <= up_to).order_by(Review.id)
        for review in session.scalars(stmt):
            latest[review.defect_id] = review  # ascending ids: the last one wins
    return latest


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
    own = list(session.scalars(select(Defect).where(Defect.frame_id == frame.id).order_by(Defect.id)))
    placed = [(d, (d.x1, d.y1, d.x2, d.y2)) for d in own]
    if frame.start_line is not None and frame.height:
        top, bottom = frame.start_line, frame.start_line + frame.height
        coil = Frame.coil_id.is_(None) if frame.coil_id is None else Frame.coil_id == frame.coil_id
        stmt = (
            select(Defect)
            .join(Frame, Defect.frame_id == Frame.id)
            .where(
                Frame.source == frame.source,
                coil,
                Defect.frame_id != frame.id,
                Defect.sy1.is_not(None),
                Defect.sy1 < bottom,
                Defect.sy2 > top,
            )
            .order_by(Defect.id)
        )
        for d in session.scalars(stmt):
            placed.append((d, (d.sx1, d.sy1 - top, d.sx2, d.sy2 - top)))
    latest = _latest_reviews(session, [d.id for d, _ in placed], up_to)
    out = []
    for d, xyxy in placed:
        status, label = _status(d, latest.get(d.id))
        out.append(VisibleDefect(d.id, tuple(float(v) for v in xyxy), status, label))
    return out


def place_window(
    xyxy: Sequence[float], *, frame_wh: tuple[int, int], window_px: int
) -> tuple[int, int, int, int]:
    """A ``window_px`` square centred on the box, shifted to lie inside the frame (smaller frames: all of
    it along that axis). Returns integer ``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive."""
    width, height = frame_wh
    out = []
    for lo, hi, size in ((xyxy[0], xyxy[2], width), (xyxy[1], xyxy[3], height)):
        span = min(window_px, size)
        start = int(round((lo + hi) / 2 - span / 2))
        out.append(min(max(start, 0), size - span))
        out.append(span)
    x0, w, y0, h = out
    return x0, y0, x0 + w, y0 + h


def _area(x1: float, y1: float, x2: float, y2: float) -> float:
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_in_window(
    xyxy: Sequence[float], window: Sequence[int], *, min_visibility: float
) -> tuple[float, float, float, float] | None:
    """The box clipped to the window in window pixels, or None when too little of it is inside.

    Visibility is the clipped area over the smaller of the box's and the window's areas, so a defect
    larger than the window that fills it still counts (a tile of the daemon would see it the same way).
    """
    x0, y0, x1, y1 = window
    cx1, cy1 = max(xyxy[0], x0), max(xyxy[1], y0)
    cx2, cy2 = min(xyxy[2], x1), min(xyxy[3], y1)
    if cx2 - cx1 < 1 or cy2 - cy1 < 1:
        return None
    full = min(_area(*xyxy), _area(*window))
    if full <= 0 or _area(cx1, cy1, cx2, cy2) / full < min_visibility:
        return None
    return (cx1 - x0, cy1 - y0, cx2 - x0, cy2 - y0)


def _contains(window: Sequence[int], xyxy: Sequence[float]) -> bool:
    return window[0] <= xyxy[0] and window[1] <= xyxy[1] and xyxy[2] <= window[2] and xyxy[3] <= window[3]


def label_window(
    window: Sequence[int],
    defects: Sequence[VisibleDefect],
    *,
    class_names: Sequence[str],
    cfg: CollectConfig,
) -> tuple[list[Box] | None, str | None]:
    """The window's boxes, or ``(None, reason)`` when it cannot be used."""
    known = set(class_names)
    boxes = []
    for d in defects:
        clipped = box_in_window(d.xyxy, window, min_visibility=cfg.min_visibility)
        if clipped is None or d.status == "rejected":
            continue
        if d.status == "unreviewed" and cfg.unreviewed == "skip":
            return None, "unreviewed_defect_in_window"
        if d.label not in known:
            return None, "unknown_class"
        boxes.append(Box(*clipped, label=str(d.label)))
    return boxes, None


def _read_raw(path: Path) -> np.ndarray | None:
    if not path.is_file():
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


def collect_snapshot(
    session: Session,
    *,
    reviews: ReviewRange,
    class_names: Sequence[str],
    cfg: CollectConfig,
    out_dir: Path,
    name: str = "new-data",
) -> Snapshot:
    """Cut, label, split and write the snapshot of ``reviews`` into ``out_dir`` (replaced if present)."""
    from datasets.split import apply_split, make_split, write_split
    from datasets.writers.vott_json import write_vott_json

    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a half-written snapshot of a killed run: start it again
    (out_dir / "images").mkdir(parents=True)
    frames_dir = Path(cfg.frames_dir)
    skipped: Counter[str] = Counter()
    touched = list(
        session.scalars(
            select(Review.defect_id)
            .where(Review.id > reviews.after, Review.id <= reviews.up_to)
            .distinct()
            .order_by(Review.defect_id)
        )
    )
    anchors: list[tuple[Defect, Frame]] = []
    for chunk in _chunks(touched):
        stmt = select(Defect, Frame).join(Frame, Defect.frame_id == Frame.id).where(Defect.id.in_(chunk))
        anchors.extend((d, f) for d, f in session.execute(stmt).all())
    by_frame: dict[int, list[Defect]] = {}
    frames: dict[int, Frame] = {}
    for d, f in sorted(anchors, key=lambda pair: (pair[1].id, pair[0].id)):
        by_frame.setdefault(f.id, []).append(d)
        frames[f.id] = f

    records: list[ImageRecord] = []
    used_frames = shared = 0
    for frame_id, frame_anchors in by_frame.items():
        frame = frames[frame_id]
        image = _read_raw(raw_frame_path(frames_dir, frame.source, frame.seq))
        if image is None:
            skipped["no_raw_frame"] += len(frame_anchors)
            continue
        height, width = image.shape[:2]
        visible = _visible_defects(session, frame, reviews.up_to)
        windows: list[tuple[int, int, int, int]] = []
        for anchor in frame_anchors:
            xyxy = (anchor.x1, anchor.y1, anchor.x2, anchor.y2)
            if any(_contains(w, xyxy) for w in windows):
                shared += 1  # already labelled in an earlier window of this frame
                continue
            window = place_window(xyxy, frame_wh=(width, height), window_px=cfg.window_px)
            boxes, reason = label_window(window, visible, class_names=class_names, cfg=cfg)
            if boxes is None:
                skipped[str(reason)] += 1
                continue
            windows.append(window)
            x0, y0, x1, y1 = window
            image_name = f"{safe_name(frame.source)}-{frame.seq}-{x0}-{y0}.png"
            path = out_dir / "images" / image_name
            _write_png(path, np.ascontiguousarray(image[y0:y1, x0:x1]))
            records.append(
                ImageRecord(
                    name=image_name,
                    width=x1 - x0,
                    height=y1 - y0,
                    boxes=tuple(boxes),
                    path=path,
                    sha256=sha256_file(path),
                    origin=Origin(file="inspection-db", item=f"frame {frame.id} defect {anchor.id}"),
                )
            )
        used_frames += bool(windows)

    aset = AnnotatedSet(images=records, class_names=tuple(class_names), source=str(out_dir), format="retrain")
    split = make_split(aset, val_fraction=cfg.val_fraction, seed=cfg.seed)
    write_split(split, out_dir / SPLIT_NAME)
    write_vott_json(aset, out_dir / EXPORT_NAME, project_name=name)
    train, val = apply_split(aset, split)
    stats = {
        "dir": str(out_dir),
        "reviews": {"after": reviews.after, "up_to": reviews.up_to, **verdict_counts(session, reviews)},
        "defects_reviewed": len(touched),
        "defects_in_shared_windows": shared,
        "frames": used_frames,
        "images": len(records),
        "background_images": sum(1 for r in records if not r.boxes),
        "boxes_per_class": _per_class(records, class_names),
        "train": {"images": len(train.images), "boxes_per_class": _per_class(train.images, class_names)},
        "val": {"images": len(val.images), "boxes_per_class": _per_class(val.images, class_names)},
        "skipped": dict(sorted(skipped.items())),
        "split_sha256": split.split_sha256,
        "export": EXPORT_NAME,
    }
    marker = out_dir / SNAPSHOT_MARKER
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, marker)
    return Snapshot(out_dir, tuple(class_names), train.images, val.images, stats)


def load_snapshot(out_dir: Path, class_names: Sequence[str]) -> Snapshot | None:
    """A snapshot written whole by :func:`collect_snapshot` (None when absent or half-written), its images
    checked against the split file's content hashes."""
    from datasets.readers import read_dataset
    from datasets.split import apply_split, read_split

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
