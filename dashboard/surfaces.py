"""Which strip surface (top / bottom) a coil's defects are on, from the data.

Sources say which surface a frame shows (``frames.surface``: a strip-sim option, ``top/``/``bottom/``
folders, or the daemon's ``surface`` setting). Defects of frames stored without one take the line's
``line_surface`` from the dashboard's config (older data), else no surface is named.
"""

from __future__ import annotations

import pandas as pd

SURFACE_ORDER = ("top", "bottom")


def by_surface(points: pd.DataFrame, fallback: str | None) -> list[tuple[str | None, pd.DataFrame]]:
    """``points`` (with a ``surface`` column) split by surface, top first, then the rows no one named
    (rows without a surface take ``fallback`` first); always at least one group."""
    said = points["surface"].fillna(fallback) if fallback else points["surface"]
    groups: list[tuple[str | None, pd.DataFrame]] = [
        (name, points[said == name]) for name in SURFACE_ORDER if (said == name).any()
    ]
    rest = points[said.isna()]
    if not rest.empty or not groups:
        groups.append((None, rest))
    return groups


def surface_title(surface: str | None) -> str:
    return f"{surface.capitalize()} surface" if surface else "Surface not recorded"
