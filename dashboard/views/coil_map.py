"""Coil map: every defect of one coil where it is, along the strip (m) and across it (m), by class."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.data import PageContext, context, q
from dashboard.ui import csv_button, empty_state, fmt_float, fmt_int

TITLE = "Coil map"
ACROSS_BIN_M = 0.05


def coil_label(row: pd.Series) -> str:
    return f"{row['line']} / {row['code']} ({int(row['defects']):,} defects)"


def along_bin_m(metres: float) -> float:
    """Grid step along the strip for the density map: about 200 bins per coil, at least 0.1 m."""
    return max(0.1, round(float(metres or 0.0) / 200.0, 1))


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    coils = q(ctx, queries.list_coils, ctx.filters)
    if coils.empty:
        empty_state("No coil was inspected with these filters.")
        return
    labels = {int(r["coil_id"]): coil_label(r) for _, r in coils.iterrows()}
    coil_id = st.selectbox("Coil", list(labels), format_func=labels.get, key="coil_pick")
    row = coils.set_index("coil_id").loc[coil_id]
    n_placed, n_unplaced = q(ctx, queries.count_coil_defects, ctx.filters, coil_id)

    c = st.columns(4)
    c[0].metric("Line", str(row["line"]))
    c[1].metric("Metres inspected", fmt_float(float(row["metres"] or 0.0), 1, " m"))
    c[2].metric("Defects", fmt_int(n_placed + n_unplaced))
    c[3].metric("Coil length", fmt_float(row["length_m"], 1, " m") if pd.notna(row["length_m"]) else "—")
    if n_unplaced:
        st.caption(f"{n_unplaced:,} defect(s) have no position on the strip and are not on the map.")
    if n_placed == 0:
        empty_state("No defect of this coil matches the filters.")
        return

    limit = ctx.config.coil_map_max_points
    if n_placed <= limit:
        points = q(ctx, queries.coil_defects, ctx.filters, coil_id, limit=limit)
        chart = (
            alt.Chart(points)
            .mark_circle(size=60, opacity=0.8)
            .encode(
                x=alt.X("position_m:Q", title="along the strip (m)"),
                y=alt.Y("cross_m:Q", title="across the strip (m)"),
                color=alt.Color("class_name:N", title="class", scale=alt.Scale(scheme="category10")),
                tooltip=["id:Q", "class_name:N", "score:Q", "position_m:Q", "cross_m:Q", "length_m:Q"],
            )
            .interactive()
        )
        st.altair_chart(chart, width="stretch")
        st.dataframe(points, hide_index=True, key="coil_table")
        csv_button(points, f"coil-{coil_id}-defects.csv", key="coil_csv")
    else:
        step = along_bin_m(float(row["metres"] or 0.0))
        grid = q(ctx, queries.coil_density, ctx.filters, coil_id, along_bin_m=step, across_bin_m=ACROSS_BIN_M)
        st.caption(f"{n_placed:,} defects: shown as counts per {step} m x {ACROSS_BIN_M} m cell.")
        chart = (
            alt.Chart(grid)
            .mark_rect()
            .encode(
                x=alt.X("position_m:Q", bin=alt.Bin(step=step), title="along the strip (m)"),
                y=alt.Y("cross_m:Q", bin=alt.Bin(step=ACROSS_BIN_M), title="across the strip (m)"),
                color=alt.Color("sum(defects):Q", title="defects"),
                tooltip=["position_m:Q", "cross_m:Q", "sum(defects):Q"],
            )
        )
        st.altair_chart(chart, width="stretch")
        st.dataframe(grid, hide_index=True, key="coil_table")
        csv_button(grid, f"coil-{coil_id}-density.csv", key="coil_csv")


if __name__ == "__main__":
    render(context())
