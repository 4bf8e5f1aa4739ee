"""Coil map: every defect of one coil where it is, along the strip (m) and across it (m), by class, one
map per strip surface (top / bottom, as the frames say), with the coil's grade and a printable report."""

from __future__ import annotations

from dataclasses import dataclass

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.colors import class_color
from dashboard.data import PageContext, context, grade_pending_coils, q
from dashboard.report_data import coil_report, side_names
from dashboard.surfaces import by_surface, surface_title
from dashboard.ui import csv_button, empty_state, fmt_float, fmt_int

TITLE = "Coil map"
POINT_NAMES = {
    "id": "Defect", "class_name": "Class", "score": "Score", "position_m": "Along (m)",
    "cross_m": "Across (m)", "length_m": "Length (m)", "width_m": "Width (m)", "surface": "Surface",
}  # fmt: skip
ACROSS_BIN_M = 0.05
MAP_WIDTH_PX = 1100
MIN_HEIGHT_PX = 200  # a long coil on a narrow strip: to scale it would be a line


def coil_label(row: pd.Series) -> str:
    grade = f" · grade {row['grade']}" if isinstance(row.get("grade"), str) else ""
    return f"{row['line']} / {row['code']} ({int(row['defects']):,} defects{grade})"


def coil_length_text(row: pd.Series) -> str:
    """The coil's recorded length; "open" while it runs; "not recorded" for a closed coil without one."""
    if pd.notna(row["length_m"]):
        return fmt_float(float(row["length_m"]), 1, " m")
    return "open" if pd.isna(row["ended_at"]) else "not recorded"


def along_bin_m(metres: float) -> float:
    """Grid step along the strip for the density map: about 200 bins per coil, at least 0.1 m."""
    return max(0.1, round(float(metres or 0.0) / 200.0, 1))


def map_height_px(length_m: float, width_m: float) -> int:
    """The map's height for a ``MAP_WIDTH_PX`` wide plot: to scale, but never under ``MIN_HEIGHT_PX``."""
    return int(max(MIN_HEIGHT_PX, min(360.0, MAP_WIDTH_PX * width_m / max(length_m, 1e-6))))


@dataclass(frozen=True, slots=True)
class MapAxes:
    """Titles and scales of a coil map in metres over the whole coil and strip, and its height."""

    x_title: str
    x_scale: alt.Scale
    y_title: str
    y_scale: alt.Scale
    height: int


def _axes(ctx: PageContext, row: pd.Series, reach_m: float, across_m: float) -> MapAxes:
    """Axes in metres over the whole coil and strip width, the strip edges named."""
    length = (
        float(row["length_m"]) if pd.notna(row["length_m"]) else max(float(row["metres"] or 0.0), reach_m)
    )
    width = ctx.config.strip_width_of(str(row["line"])) or max(across_m, 0.1)
    zero, far = side_names(ctx)
    return MapAxes(
        x_title="along the strip (m)",
        x_scale=alt.Scale(domain=[0, length], nice=False),
        y_title=f"across (m) · 0 = {zero}, bottom = {far}",
        y_scale=alt.Scale(domain=[0, width], nice=False, reverse=True),
        height=map_height_px(length, width),
    )


def _grade(row: pd.Series) -> None:
    grade = row.get("grade")
    if isinstance(grade, str):
        reasons = row.get("grade_reasons") or []
        st.caption("Grade reasons: " + ("; ".join(reasons) if reasons else "no grading rule broken."))
    elif pd.isna(row["ended_at"]):
        st.caption("The coil is still open: it is graded once it is closed.")


def _surface_groups(ctx: PageContext, row: pd.Series, table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The coil's rows by strip surface as ``(heading, rows)``: a heading per surface when the frames
    say; when they do not, one group without a heading, captioned with the line's surface from the
    settings when there is one."""
    configured = ctx.config.line_surface.get(str(row["line"]))
    groups = by_surface(table, configured)
    if table["surface"].notna().any():
        return [(surface_title(surface), part) for surface, part in groups]
    if configured:
        st.caption(f"The {configured} surface of the strip (line {row['line']}'s camera, from the settings).")
    return [("", table)]


def _points(ctx: PageContext, row: pd.Series, coil_id: int, limit: int) -> None:
    points = q(ctx, queries.coil_defects, ctx.filters, coil_id, limit=limit)
    a = _axes(ctx, row, float(points["position_m"].max()), float(points["cross_m"].max()))
    for k, (heading, part) in enumerate(_surface_groups(ctx, row, points)):
        if heading:
            st.subheader(heading)
        chart = (
            alt.Chart(part, height=a.height)
            .mark_circle(size=60, opacity=0.8)
            .encode(
                x=alt.X("position_m:Q", title=a.x_title, scale=a.x_scale),
                y=alt.Y("cross_m:Q", title=a.y_title, scale=a.y_scale),
                color=class_color(points["class_name"]),
                tooltip=["id:Q", "class_name:N", "score:Q", "position_m:Q", "cross_m:Q", "length_m:Q"],
            )
            .interactive()
        )
        st.altair_chart(chart, width="stretch", height=a.height + 70, key=f"coil_map_{k}")
    st.dataframe(points, hide_index=True, key="coil_table", column_config=POINT_NAMES)
    csv_button(points, f"coil-{coil_id}-defects.csv", key="coil_csv")


def _density(ctx: PageContext, row: pd.Series, coil_id: int, n_placed: int) -> None:
    step = along_bin_m(float(row["metres"] or 0.0))
    grid = q(ctx, queries.coil_density, ctx.filters, coil_id, along_bin_m=step, across_bin_m=ACROSS_BIN_M)
    st.caption(f"{n_placed:,} defects: shown as counts per {step} m × {ACROSS_BIN_M} m cell.")
    a = _axes(ctx, row, float(grid["position_m"].max()) + step, float(grid["cross_m"].max()) + ACROSS_BIN_M)
    for k, (heading, part) in enumerate(_surface_groups(ctx, row, grid)):
        if heading:
            st.subheader(heading)
        chart = (
            alt.Chart(part, height=a.height)
            .mark_rect()
            .encode(
                x=alt.X("position_m:Q", bin=alt.Bin(step=step), title=a.x_title, scale=a.x_scale),
                y=alt.Y("cross_m:Q", bin=alt.Bin(step=ACROSS_BIN_M), title=a.y_title, scale=a.y_scale),
                color=alt.Color("sum(defects):Q", title="defects", scale=alt.Scale(scheme="oranges")),
                tooltip=["position_m:Q", "cross_m:Q", "sum(defects):Q"],
            )
        )
        st.altair_chart(chart, width="stretch", height=a.height + 70, key=f"coil_map_{k}")
    st.dataframe(grid, hide_index=True, key="coil_table")
    csv_button(grid, f"coil-{coil_id}-density.csv", key="coil_csv")


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    grade_pending_coils(ctx)
    coils = q(ctx, queries.list_coils, ctx.filters)
    if coils.empty:
        empty_state("No coil was inspected with these filters.")
        return
    labels = {int(r["coil_id"]): coil_label(r) for _, r in coils.iterrows()}
    coil_id = st.selectbox("Coil", list(labels), format_func=labels.__getitem__, key="coil_pick")
    row = coils.set_index("coil_id").loc[coil_id]
    n_placed, n_unplaced = q(ctx, queries.count_coil_defects, ctx.filters, coil_id)

    c = st.columns(5)
    c[0].metric("Line", str(row["line"]))
    c[1].metric("Coil length", coil_length_text(row))
    c[2].metric("Metres inspected", fmt_float(float(row["metres"] or 0.0), 1, " m"))
    c[3].metric("Defects", fmt_int(n_placed + n_unplaced))
    c[4].metric("Grade", str(row["grade"]) if isinstance(row["grade"], str) else "—")
    _grade(row)
    st.download_button(
        "Coil report (HTML, prints to PDF)",
        lambda: coil_report(ctx, coil_id).encode("utf-8"),
        file_name=f"coil-{row['line']}-{row['code']}.html",
        mime="text/html",
        key="coil_report",
        on_click="ignore",
    )
    if n_unplaced:
        st.caption(f"{n_unplaced:,} defect(s) have no position on the strip and are not on the map.")
    if n_placed == 0:
        empty_state("No defect of this coil matches the filters.")
        return
    limit = ctx.config.coil_map_max_points
    if n_placed <= limit:
        _points(ctx, row, coil_id, limit)
    else:
        _density(ctx, row, coil_id, n_placed)


if __name__ == "__main__":
    render(context())
