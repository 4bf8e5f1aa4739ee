"""Tracking the same physical defect across overlapping line-scan frames, so it is stored once.

Consecutive frames share ``overlap`` lines; a defect there is detected twice. In strip coordinates
(x across, y = encoder line) both sightings sit at the same place, so a detection matches an open
track of its class when their IoU is high, or when the IoU is moderate and the crops look alike by
dHash (Hamming distance), which tolerates a box that grew or shrank at a frame border. Sources
without encoder positions (folders, videos) have no shared coordinates: every detection is new.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from datasets.detections import Detections
from datasets.dhash import dhash_array, hamming
from inspection.messages import Frame
from inspection.results import TrackedDefect


@dataclass
class _Track:
    track_id: str
    class_id: int
    strip_xyxy: np.ndarray  # (4,)
    dhash: int  # -1: unknown (a track reopened after a restart)
    last_seq: int


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area = (box[2:] - box[:2]).clip(0).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).clip(0, None).prod(axis=1)
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _box4(box: np.ndarray) -> tuple[float, float, float, float]:
    """A 4-vector ``(x1, y1, x2, y2)`` as plain floats (what the messages and the database hold)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1, y1, x2, y2)


def crop_hash(image: np.ndarray, xyxy: np.ndarray) -> int:
    h, w = image.shape[:2]
    x1, y1 = int(max(0, np.floor(xyxy[0]))), int(max(0, np.floor(xyxy[1])))
    x2, y2 = int(min(w, np.ceil(xyxy[2]))), int(min(h, np.ceil(xyxy[3])))
    if x2 <= x1 or y2 <= y1:
        return 0
    return dhash_array(image[y1:y2, x1:x2])


class Tracker:
    """One tracker per source; ``update`` is called with frames in sequence order."""

    def __init__(
        self,
        *,
        class_names: list[str],
        iou_threshold: float = 0.5,
        hash_iou_threshold: float = 0.2,
        max_hamming: int = 10,
    ):
        self.class_names = class_names
        self.iou_threshold = iou_threshold
        self.hash_iou_threshold = hash_iou_threshold
        self.max_hamming = max_hamming
        self.tracks: list[_Track] = []

    def resume(self, defects: Iterable[tuple[str, str, Sequence[float], int]]) -> int:
        """Reopen tracks a previous run left open: ``(track_id, class_name, strip_xyxy, last_seq)`` of the
        defects its last frames stored, so the first frame after a restart, which overlaps them, does not
        store them again. Their crops' dHash is unknown: they match by IoU alone. Returns how many."""
        count = 0
        for track_id, class_name, strip_xyxy, last_seq in defects:
            if class_name in self.class_names:
                box = np.asarray(strip_xyxy, np.float64).reshape(4)
                self.tracks.append(
                    _Track(str(track_id), self.class_names.index(class_name), box, -1, last_seq)
                )
                count += 1
        return count

    def _assign(self, strips: np.ndarray, classes: np.ndarray, digests: list[int]) -> dict[int, int]:
        """Detection index -> open track index, one track per detection, most IoU in all.

        A pair may match when the IoU is high, or moderate with crops that look alike by dHash. Among
        those pairs the assignment is global (``linear_sum_assignment``, maximum total IoU): matched one by
        one, a well-scored box that overlaps a neighbour's track moderately could take that track and
        leave the neighbour's own re-sighting (IoU 1) to be stored again as a new defect.
        """
        if not self.tracks or not len(strips):
            return {}
        boxes = np.stack([t.strip_xyxy for t in self.tracks])
        iou = np.stack([iou_one_to_many(box, boxes) for box in strips])
        same = classes[:, None] == np.array([t.class_id for t in self.tracks])[None, :]
        allowed = same & (iou >= self.iou_threshold)
        for i, k in zip(*np.nonzero(same & ~allowed & (iou >= self.hash_iou_threshold)), strict=True):
            dhash = self.tracks[k].dhash
            allowed[i, k] = dhash >= 0 and hamming(digests[i], dhash) <= self.max_hamming
        if not allowed.any():
            return {}
        rows, cols = linear_sum_assignment(np.where(allowed, -iou, 1.0))
        return {int(i): int(k) for i, k in zip(rows, cols, strict=True) if allowed[i, k]}

    def update(self, frame: Frame, detections: Detections) -> tuple[list[TrackedDefect], list[str]]:
        """New defects (first sighting) and the ids of tracks seen again in this frame."""
        offset = frame.start_line
        new: list[TrackedDefect] = []
        seen_again: list[str] = []
        order = np.lexsort((detections.xyxy[:, 0], detections.xyxy[:, 1], -detections.scores))
        boxes = detections.xyxy[order].astype(np.float64)
        digests = [crop_hash(frame.image, box) for box in boxes]
        strips = None if offset is None else boxes + np.array([0, offset, 0, offset], np.float64)
        matches = {} if strips is None else self._assign(strips, detections.class_ids[order], digests)
        opened: list[_Track] = []
        for n, i in enumerate(order):
            box, digest = boxes[n], digests[n]
            class_id = int(detections.class_ids[i])
            strip = None if strips is None else strips[n]
            if n in matches:
                assert strip is not None, "only a box with a strip position is matched"
                track = self.tracks[matches[n]]
                track.strip_xyxy, track.dhash, track.last_seq = strip, digest, frame.seq
                seen_again.append(track.track_id)
                continue
            track_id = f"{frame.seq}-{n}"
            new.append(
                TrackedDefect(
                    class_id=class_id,
                    class_name=self.class_names[class_id],
                    score=float(detections.scores[i]),
                    xyxy=_box4(box),
                    strip_xyxy=None if strip is None else _box4(strip),
                    track_id=track_id,
                    first_frame_seq=frame.seq,
                    dhash=digest,
                )
            )
            if strip is not None:
                opened.append(_Track(track_id, class_id, strip, digest, frame.seq))
        self.tracks.extend(opened)  # after the assignment: this frame's new defects match from the next on
        if offset is not None:
            # Frames only move forward: a track that ends before this frame's first line is done.
            self.tracks = [t for t in self.tracks if t.strip_xyxy[3] >= offset]
        return new, seen_again
