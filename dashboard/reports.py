"""Printable reports: one coil (grade, map, Pareto, worst crops) or one shift (its figures, every coil it
touched with grade and map, Pareto, worst crops), as one self-contained HTML file.

Self-contained so it prints the same anywhere and opens on an offline plant PC: crops are embedded as
``data:`` PNGs, maps are inline SVG (:mod:`dashboard.svgmap`), styles inline, nothing fetched. Jinja2
(autoescaping) renders ``templates/report.html``; the browser's "Print" makes the PDF.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image

from dashboard.colors import class_colour

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


@dataclass(frozen=True, slots=True)
class CoilPart:
    """What a report says about one coil (texts already formatted for the plant)."""

    line: str
    code: str
    started: str
    ended: str
    length: str
    metres: str
    defects: int
    grade: str
    graded: bool
    reasons: tuple[str, ...]
    map_svg: str


@dataclass(frozen=True, slots=True)
class CropPart:
    defect_id: int
    class_name: str
    score: str
    where: str
    png_b64: str

    @property
    def colour(self) -> str:
        return class_colour(self.class_name)


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pareto_rows(pareto: pd.DataFrame, *, bar_px: int = 220) -> list[dict[str, object]]:
    """Rows of a ``queries.pareto`` table for the template: shares as text, bar lengths, the vital few."""
    if pareto.empty:
        return []
    top = float(pareto["defects"].max())
    rows, reached = [], False
    for name, n, share, cumulative in pareto[
        ["class_name", "defects", "share_pct", "cumulative_pct"]
    ].itertuples(index=False):
        rows.append(
            {
                "class_name": name,
                "defects": f"{int(n):,}",
                "share": f"{share:.1f} %",
                "cumulative": f"{cumulative:.1f} %",
                "colour": class_colour(str(name)),
                "bar_px": round(bar_px * float(n) / top) if top else 0,
                "vital": not reached,
            }
        )
        reached = reached or cumulative >= 80.0 - 1e-9
    return rows


def render_report(
    *,
    title: str,
    subtitle: str,
    figures: list[tuple[str, str]],
    coils: list[CoilPart],
    pareto: pd.DataFrame,
    crops: list[CropPart],
    generated_at: datetime,
    tz: tzinfo,
) -> str:
    """The report's HTML."""
    local = generated_at.astimezone(tz)
    footer = f"Made by the steel inspection QA dashboard on {local:%Y-%m-%d %H:%M} {local.tzname()}."
    return _ENV.get_template("report.html").render(
        title=title,
        subtitle=subtitle,
        figures=figures,
        coils=coils,
        pareto=pareto_rows(pareto),
        crops=crops,
        footer=footer,
    )
