"""Windows around reviewed defects: where a window lies in its frame, which boxes it shows, and whether it
can be labelled at all (an unreviewed defect in view, a class the model does not know)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from datasets.model import Box
from inspection.retrain.config import CollectConfig


@dataclass(frozen=True)
class VisibleDefect:
    """A defect as seen in one frame: ``xyxy`` in that frame's pixels; ``label`` None when rejected."""

    defect_id: int
    xyxy: tuple[float, float, float, float]
    status: str  # "positive", "rejected" or "unreviewed"
    label: str | None


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


def contains(window: Sequence[int], xyxy: Sequence[float]) -> bool:
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
