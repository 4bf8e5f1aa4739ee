"""Reviewed detections out as a VoTT JSON export with its images, for annotators and the retraining job.

Each reviewed defect becomes one image: its crop (what the daemon keeps of every defect), with the
defect's box inside it, labelled by the latest review: ``confirmed`` keeps the model's class,
``relabelled`` takes the operator's class, ``rejected`` leaves the image without boxes (a background
image: steel the model wrongly flagged). A defect without a crop on disk uses its frame image when one
was kept; a defect with neither is left out and reported.

The crop is taken to be the defect's frame box widened by some margin and clipped to the frame (the
daemon's sink pads 8 px); the margin is recovered from the crop's size (:func:`box_in_crop`), so the
daemon may change it.
"""

from __future__ import annotations

import io
import math
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import SupportsInt

import pandas as pd
from PIL import Image, UnidentifiedImageError

from datasets.model import AnnotatedSet, Box, ImageRecord, Origin
from datasets.problems import Problem
from datasets.writers import write_vott_json

Resolver = Callable[[str | None], Path | None]


def _axis_offset(lo: float, hi: float, crop: int, frame: int | None) -> float | None:
    """Where a crop of ``crop`` pixels starts on one axis, if it is ``[lo, hi)`` widened and clipped.

    Tries margins from 0 up, with the crop's end rounded down (the daemon's ``int(x2 + pad)``) or up,
    and takes the first that gives the crop's size exactly; None when none does.
    """
    for margin in range(0, crop + 1):
        start = max(0, math.floor(lo - margin))
        for end in (math.floor(hi + margin), math.ceil(hi + margin)):
            if frame is not None:
                end = min(frame, end)
            if end - start == crop:
                return float(start)
    return None


def box_in_crop(
    xyxy: tuple[float, float, float, float],
    crop_wh: tuple[int, int],
    frame_wh: tuple[int | None, int | None] = (None, None),
) -> tuple[float, float, float, float] | None:
    """The defect's box in crop pixels, or None when the crop is not its box widened by a margin.

    Args:
        xyxy: the box in frame pixels (0-based, x2/y2 exclusive).
        crop_wh: the crop image's width and height.
        frame_wh: the frame's width and height when known (the crop is clipped to them).
    """
    x1, y1, x2, y2 = xyxy
    ox = _axis_offset(x1, x2, crop_wh[0], frame_wh[0])
    oy = _axis_offset(y1, y2, crop_wh[1], frame_wh[1])
    if ox is None or oy is None:
        return None
    w, h = crop_wh
    box = (max(0.0, x1 - ox), max(0.0, y1 - oy), min(float(w), x2 - ox), min(float(h), y2 - oy))
    return box if box[2] > box[0] and box[3] > box[1] else None


def _size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _opt_int(value: SupportsInt | None) -> int | None:
    """An int from a nullable integer column (pandas reads its NULLs as NaN), or None."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def reviewed_set(
    rows: pd.DataFrame, resolve: Resolver, *, class_names: Iterable[str], source: str = ""
) -> AnnotatedSet:
    """An :class:`AnnotatedSet` of reviewed defects (rows of ``queries.reviewed_for_export``).

    ``resolve`` maps a stored image path to a file on disk (or None). Images are named
    ``defect-<id>.<ext>``; ``problems`` lists the defects left out and why.
    """
    images: list[ImageRecord] = []
    problems: list[Problem] = []
    labels = set(class_names)
    for row in rows.itertuples(index=False):
        item = f"defect {row.defect_id}"
        label = {"confirmed": row.class_name, "relabelled": row.new_class, "rejected": None}.get(row.verdict)
        xyxy = (float(row.x1), float(row.y1), float(row.x2), float(row.y2))
        box_xyxy: tuple[float, float, float, float] | None = None
        path = resolve(row.crop_path)
        size = _size(path) if path is not None else None
        if path is not None and size is not None:
            box_xyxy = box_in_crop(xyxy, size, (_opt_int(row.frame_width), _opt_int(row.frame_height)))
            if box_xyxy is None and label is not None:
                problems.append(
                    Problem("warning", source, item, "crop_path", f"box {xyxy} does not fit crop {size}")
                )
                path = None
        if path is None or size is None:
            path = resolve(row.frame_image_path)
            size = _size(path) if path is not None else None
            box_xyxy = xyxy
        if path is None or size is None:
            problems.append(Problem("warning", source, item, "crop_path", "no crop or frame image on disk"))
            continue
        boxes: tuple[Box, ...] = ()
        if label is not None and box_xyxy is not None:
            boxes = (Box(*box_xyxy, label=str(label)),)
            labels.add(str(label))
        images.append(
            ImageRecord(
                name=f"defect-{int(row.defect_id)}{path.suffix.lower() or '.png'}",
                width=size[0],
                height=size[1],
                boxes=boxes,
                path=path,
                origin=Origin(source, item),
            )
        )
    return AnnotatedSet(
        images=images, class_names=tuple(sorted(labels)), problems=problems, source=source, format="vott-json"
    )


def write_export(aset: AnnotatedSet, folder: Path, *, project_name: str = "steel-reviews") -> Path:
    """Write ``aset`` as a VoTT JSON export with its images copied beside it; returns the JSON file."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_vott_json(aset, folder, project_name=project_name, copy_images=True)


def export_zip(aset: AnnotatedSet, *, project_name: str = "steel-reviews") -> bytes:
    """The export folder (JSON and images) as the bytes of a zip archive, for a download button."""
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="steel-vott-") as tmp:
        folder = Path(tmp) / project_name
        write_export(aset, folder, project_name=project_name)
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(folder.parent).as_posix())
    return buffer.getvalue()
