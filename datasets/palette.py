"""One colour per defect class, defined once: the daemon's annotated frames, the dashboard's charts, maps
and crops, and the VoTT export's tags all take a class's colour from here.

The colours are a VoTT-style tag palette (:data:`TAG_COLORS`) in the order of
the NEU-DET classes, so a class looks the same in a chart, on a frame the daemon kept and in the
annotation tool. A class outside NEU-DET (``anomaly``, a plant's own class) gets a later palette colour
chosen from its name (a CRC, not Python's salted ``hash``), the same on every page, process and run.
"""

from __future__ import annotations

import functools
import zlib

from datasets.model import NEU_DET_CLASSES

# 20 distinct colours (Sasha Trubetskoy's list), the kind of palette VoTT assigns to new tags;
# the VoTT writer's tags take their colours from here too (``class_colour``).
TAG_COLORS: tuple[str, ...] = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
    "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8",
    "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080",
)  # fmt: skip


@functools.cache  # looked up per box of every frame the daemon draws
def class_colour(name: str) -> str:
    """``#rrggbb`` of a class."""
    if name in NEU_DET_CLASSES:
        return TAG_COLORS[NEU_DET_CLASSES.index(name) % len(TAG_COLORS)]
    spare = TAG_COLORS[len(NEU_DET_CLASSES) :]
    return spare[zlib.crc32(name.encode("utf-8")) % len(spare)]


def class_rgb(name: str) -> tuple[int, int, int]:
    """The class's colour as ``(r, g, b)`` (PIL, the dashboard)."""
    colour = class_colour(name).lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def class_bgr(name: str) -> tuple[int, int, int]:
    """The class's colour as ``(b, g, r)`` (OpenCV, the daemon's annotated frames)."""
    r, g, b = class_rgb(name)
    return b, g, r
