"""Images for the Gallery, Review and Live pages: frames with a defect's box drawn, safe to show.

Pillow only (no OpenCV, no torch). Any image the daemon wrote is shown as RGB; a file that cannot be
read gives None, and the page shows a placeholder instead of failing.
"""

from __future__ import annotations

from pathlib import Path
from typing import SupportsFloat

from PIL import Image, ImageDraw, UnidentifiedImageError

from dashboard.colors import class_rgb
from dashboard.export import box_in_crop

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
