"""One colour per defect class on every page: charts, coil map, crops and the VoTT export's tags.

The palette is defined once in :mod:`datasets.palette`, which the daemon draws its annotated frames
with too, so a class looks the same on a live frame, in a chart, on a crop and in the annotation tool.
"""

from __future__ import annotations

from collections.abc import Iterable

import altair as alt

from datasets.palette import class_colour, class_rgb

__all__ = ["class_color", "class_colour", "class_rgb"]


def class_color(names: Iterable[str], field: str = "class_name", title: str = "Class") -> alt.Color:
    """An Altair colour encoding of ``field`` with every class in its own colour."""
    domain = sorted({str(n) for n in names})
    return alt.Color(
        f"{field}:N", title=title, scale=alt.Scale(domain=domain, range=[class_colour(n) for n in domain])
    )
