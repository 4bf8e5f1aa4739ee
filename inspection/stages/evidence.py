"""The sink's evidence files: the annotated copy of a frame, defect crops, raw pixels, written atomically
(a reader never sees half a file; a full disk leaves nothing behind and says how much room was left)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from datasets.palette import class_bgr
from inspection.messages import Frame


def draw_boxes(image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, labels: list[str]) -> np.ndarray:
    """The frame with each box drawn and labelled in its class's colour (the dashboard's, one palette)."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for box, cls in zip(boxes.astype(int), class_ids, strict=True):
        colour = class_bgr(labels[int(cls)])
        cv2.rectangle(canvas, (box[0], box[1]), (box[2] - 1, box[3] - 1), colour, 2)
        cv2.putText(
            canvas,
            labels[int(cls)],
            (box[0] + 2, max(10, box[1] + 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            colour,
            1,
            cv2.LINE_AA,
        )
    return canvas


def write_image_atomic(path: Path, image: np.ndarray) -> None:
    """Write an image under a temporary name, then rename it; OSError (nothing left behind) when the
    folder cannot take it (a full disk: OpenCV only says False, so the free space is named)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        ok = cv2.imwrite(str(tmp), image)
    except cv2.error as exc:
        ok, detail = False, str(exc).strip().splitlines()[-1]
    else:
        detail = ""
    if not ok:
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        raise OSError(f"cannot write {path} ({free} bytes free){': ' + detail if detail else ''}")
    os.replace(tmp, path)


def raw_pixels(frame: Frame) -> np.ndarray:
    """The frame as the detector saw it, resized back to the source frame when preprocessing resized it
    (defect boxes are stored in source-frame pixels)."""
    scale = frame.meta.get("preprocess_scale_xy")
    if scale is None:
        return frame.image
    size_wh = (round(frame.width * scale[0]), round(frame.height * scale[1]))
    return cv2.resize(frame.image, size_wh, interpolation=cv2.INTER_LINEAR)
