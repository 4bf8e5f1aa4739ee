"""One colour per defect class on every page: charts, coil map, crops and the VoTT export's tags.

The colours are the VoTT writer's tag palette (``datasets.writers.vott_json.TAG_COLORS``) in the order
of the NEU-DET classes, which is also the order the daemon draws its boxes in (its first six colours),
so a class looks the same in a chart, on a crop and in the annotation tool. A class outside NEU-DET
gets a later palette colour chosen from its name, the same on every page and every run.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import altair as alt

from datasets.model import NEU_DET_CLASSES
from datasets.writers.vott_json import TAG_COLORS


def class_colour(name: str) -> str:
    """``#rrggbb`` of a class."""
    if name in NEU_DET_CLASSES:
        return TAG_COLORS[NEU_DET_CLASSES.index(name) % len(TAG_COLORS)]
    spare = TAG_COLORS[len(NEU_DET_CLASSES) :]
    return spare[zlib.crc32(name.encode("utf-8")) % len(spare)]


def class_rgb(name: str) -> tuple[int, int, int]:
    colour = class_colour(name).lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def class_color(names: Iterable[str], field: str = "class_name", title: str = "Class") -> alt.Color:
    """An Altair colour encoding of ``field`` with every class in its own colour."""
    domain = sorted({str(n) for n in names})
    return alt.Color(
        f"{field}:N", title=title, scale=alt.Scale(domain=domain, range=[class_colour(n) for n in domain])
    )
