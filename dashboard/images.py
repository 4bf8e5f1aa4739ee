"""Images for the Gallery, Review and Live pages: frames with a defect's box drawn, safe to show.

Pillow only (no OpenCV, no torch). Any image the daemon wrote is shown as RGB; a file that cannot be
read gives None, and the page shows a placeholder instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import SupportsFloat

from PIL import Image, ImageDraw, UnidentifiedImageError

from dashboard.colors import class_rgb
from dashboard.export import box_in_crop
from inspection.storage.paths import crop_window

Resolver = Callable[[str | None], Path | None]  # a stored media path -> the file on disk, or None

BOX_RGB = (255, 40, 40)
PAD_RGB = (245, 245, 245)


def load_rgb(path: Path | None) -> Image.Image | None:
    """The image at ``path`` as RGB, or None when missing or unreadable."""
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def draw_box(
    image: Image.Image,
    xyxy: tuple[float, float, float, float],
    *,
    label: str | None = None,
    rgb: tuple[int, int, int] = BOX_RGB,
) -> Image.Image:
    """A copy of ``image`` with the box ``xyxy`` (0-based pixels, x2/y2 exclusive) outlined and labelled.

    The line width grows with the image so the box stays visible on a 4,000-pixel frame.
    """
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    x1, y1, x2, y2 = xyxy
    width = max(2, round(max(out.size) / 250))
    draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=rgb, width=width)
    if label:
        draw.text((x1 + width + 1, max(0, y1 - 12)), label, fill=rgb)
    return out


def annotated_crop(
    crop: Image.Image,
    xyxy: tuple[float, float, float, float],
    frame_wh: tuple[int | None, int | None],
    *,
    size: int | None = None,
    rgb: tuple[int, int, int] = BOX_RGB,
) -> Image.Image:
    """The crop with the defect's box drawn where it lies in it (when that can be told), in ``rgb``.

    With ``size`` the crop is first scaled into a ``size`` x ``size`` square (padded, aspect kept) so a
    grid of crops lines up, and the box is drawn at that scale with a thin line.
    """
    box = box_in_crop(xyxy, crop.size, frame_wh)
    out = crop.convert("RGB")
    if size:
        scale = min(size / out.width, size / out.height)
        scaled = out.resize(
            (max(1, round(out.width * scale)), max(1, round(out.height * scale))), Image.Resampling.BICUBIC
        )
        out = Image.new("RGB", (size, size), PAD_RGB)
        ox, oy = (size - scaled.width) // 2, (size - scaled.height) // 2
        out.paste(scaled, (ox, oy))
        if box is not None:
            box = (box[0] * scale + ox, box[1] * scale + oy, box[2] * scale + ox, box[3] * scale + oy)
    return draw_box(out, box, rgb=rgb) if box is not None else out


def _int_or_none(value: object) -> int | None:
    if not isinstance(value, str | SupportsFloat):
        return None  # None, or pandas' NA in a nullable column
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else int(number)


def row_crop(path: Path | None, row: dict, *, size: int | None = None) -> Image.Image | None:
    """The annotated crop of a defect row (``queries.DEFECT_COLUMNS``), or None without an image."""
    crop = load_rgb(path)
    if crop is None:
        return None
    xyxy = (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"]))
    frame_wh = (_int_or_none(row.get("frame_width")), _int_or_none(row.get("frame_height")))
    return annotated_crop(crop, xyxy, frame_wh, size=size, rgb=class_rgb(str(row["class_name"])))


def defect_picture(row: dict, resolve: Resolver, *, size: int | None = None) -> Image.Image | None:
    """A defect row's crop with its box; cut from the frame image when the crop file is missing.

    A crop can be gone while its frame is kept: a clean-up job deleted it, or the daemon never wrote it
    (``output.save_crops: false`` saves its encoding on a busy line). The window is the daemon's own
    (``crop_window``), taken from the frame image scaled to the frame's stored size when it differs.
    """
    picture = row_crop(resolve(row.get("crop_path")), row, size=size)
    if picture is not None:
        return picture
    frame = load_rgb(resolve(row.get("frame_image_path")))
    if frame is None:
        return None
    xyxy = (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"]))
    stored_w, stored_h = _int_or_none(row.get("frame_width")), _int_or_none(row.get("frame_height"))
    if stored_w and stored_h and (stored_w, stored_h) != frame.size:  # a frame image kept at another scale
        sx, sy = frame.width / stored_w, frame.height / stored_h
        xyxy = (xyxy[0] * sx, xyxy[1] * sy, xyxy[2] * sx, xyxy[3] * sy)
    window = crop_window(xyxy, (frame.height, frame.width))
    if window is None:  # the box lies outside the frame image: nothing of it to show
        return None
    rgb = class_rgb(str(row["class_name"]))
    return annotated_crop(frame.crop(window), xyxy, frame.size, size=size, rgb=rgb)
