"""A coil map as a standalone SVG, for the printable reports (no script, no font or image fetched).

Hand-written rather than exported from the page's Altair chart: exporting Vega-Lite to SVG needs a
JavaScript engine (vl-convert) on the server, and a report map is only axes, ticks and dots. Drawn to
scale: one metre along the strip is as long as one metre across it, up to a readable aspect ratio.
"""

from __future__ import annotations

import math
from html import escape

import pandas as pd

from dashboard.colors import class_colour

WIDTH_PX = 900
MARGIN_PX = (48, 28, 40, 110)  # top, right, bottom, left
MAX_ASPECT = 12.0  # a 2,000 m coil on a 1.5 m strip is drawn this many times longer than wide at most
DENSE_POINTS = 3000


def nice_step(span: float, ticks: int = 8) -> float:
    """A 1/2/5 x 10^k step giving about ``ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _ticks(span: float) -> list[float]:
    step = nice_step(span)
    return [k * step for k in range(int(span // step) + 1)]


def coil_map_svg(
    points: pd.DataFrame,
    *,
    length_m: float,
    width_m: float,
    zero_side: str = "operator side",
    far_side: str = "drive side",
    surface: str | None = None,
) -> str:
    """An SVG of the defects (``position_m, cross_m, class_name``) of a coil ``length_m`` by ``width_m``.

    Above ``DENSE_POINTS`` defects each is a faint dot, so dense stretches show as dark bands.
    ``zero_side`` names the strip edge at ``cross_m = 0`` (the camera's left edge), ``surface`` the strip
    surface the camera sees (``top``/``bottom``) when the plant says.
    """
    length_m, width_m = max(length_m, 1e-6), max(width_m, 1e-6)
    top, right, bottom, left = MARGIN_PX
    plot_w = WIDTH_PX - left - right
    plot_h = max(40.0, min(plot_w * width_m / length_m, 240.0), plot_w / MAX_ASPECT)
    height = top + plot_h + bottom
    sx, sy = plot_w / length_m, plot_h / width_m
    dense = len(points) > DENSE_POINTS
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH_PX} {height:.0f}" font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{top}" width="{plot_w:.1f}" height="{plot_h:.1f}" '
        'fill="#f4f6f8" stroke="#555"/>',
    ]
    for x in _ticks(length_m):
        px = left + x * sx
        parts.append(
            f'<line x1="{px:.1f}" y1="{top + plot_h:.1f}" x2="{px:.1f}" '
            f'y2="{top + plot_h + 5:.1f}" stroke="#555"/>'
        )
        parts.append(f'<text x="{px:.1f}" y="{top + plot_h + 17:.1f}" text-anchor="middle">{x:g} m</text>')
    for y in _ticks(width_m):
        py = top + y * sy
        parts.append(f'<line x1="{left - 5}" y1="{py:.1f}" x2="{left}" y2="{py:.1f}" stroke="#555"/>')
        parts.append(f'<text x="{left - 8}" y="{py + 4:.1f}" text-anchor="end">{y:g} m</text>')
    parts.append(f'<text x="{left}" y="{top - 8}" font-weight="bold">{escape(zero_side)}</text>')
    parts.append(f'<text x="{left}" y="{top + plot_h + 33:.1f}" font-weight="bold">{escape(far_side)}</text>')
    caption = "along the strip (m) →" + (f" · {escape(surface)} surface" if surface else "")
    parts.append(f'<text x="{WIDTH_PX - right}" y="{top - 8}" text-anchor="end">{caption}</text>')
    radius, opacity = (1.5, 0.25) if dense else (3.0, 0.85)
    for x, y, name in zip(points["position_m"], points["cross_m"], points["class_name"], strict=True):
        if pd.isna(x) or pd.isna(y):
            continue
        cx, cy = left + min(float(x), length_m) * sx, top + min(float(y), width_m) * sy
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{class_colour(str(name))}" '
            f'fill-opacity="{opacity}"><title>{escape(str(name))} at {float(x):.2f} m</title></circle>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
