"""Pareto: which defect classes make most of the defects (bars) and how fast the total adds up (line)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.colors import class_color
from dashboard.data import PageContext, context, q
from dashboard.ui import csv_button, empty_state, fmt_int

TITLE = "Pareto"


def pareto_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Bars of defects per class in decreasing order (each class in its colour), the cumulative share as
    a line with a marked point per class on a second axis, and the 80 % line that splits off the vital
    few."""
    order = table["class_name"].tolist()
    base = alt.Chart(table).encode(x=alt.X("class_name:N", sort=order, title="Class"))
    bars = base.mark_bar().encode(
        y=alt.Y("defects:Q", title="Defects"),
        color=class_color(table["class_name"]),
        tooltip=["class_name:N", "defects:Q", alt.Tooltip("share_pct:Q", format=".1f")],
    )
    cumulative = alt.Y("cumulative_pct:Q", title="Cumulative %", scale=alt.Scale(domain=[0, 100]))
    line = base.mark_line(
        color="#333333", point=alt.OverlayMarkDef(color="#333333", size=70, filled=True)
    ).encode(y=cumulative, tooltip=["class_name:N", alt.Tooltip("cumulative_pct:Q", format=".1f")])
    eighty = (
        alt.Chart(pd.DataFrame({"cumulative_pct": [80.0]}))
        .mark_rule(color="#d62728", strokeDash=[6, 4])
        .encode(y=alt.Y("cumulative_pct:Q", scale=alt.Scale(domain=[0, 100]), axis=None))
    )
    return alt.layer(bars, alt.layer(line, eighty)).resolve_scale(y="independent", color="independent")


def vital_few(table: pd.DataFrame, share_pct: float = 80.0) -> list[str]:
    """The classes that together first reach ``share_pct`` of the defects (the "vital few")."""
    out = []
    for name, cumulative in zip(table["class_name"], table["cumulative_pct"], strict=True):
        out.append(str(name))
        if cumulative >= share_pct - 1e-9:
            break
    return out


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    table = q(ctx, queries.pareto, ctx.filters)
    if table.empty:
        empty_state("No defects for these filters.")
        return
    total = int(table["defects"].sum())
    few = vital_few(table)
    st.metric("Defects", fmt_int(total))
    if len(table) == 1:
        st.caption(f"One class only: {table['class_name'].iloc[0]}.")
    else:
        st.caption(f"{len(few)} of {len(table)} classes make 80% of the defects: {', '.join(few)}.")
    st.altair_chart(pareto_chart(table), width="stretch")
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "class_name": "Class",
            "defects": st.column_config.NumberColumn("Defects", format="%d"),
            "share_pct": st.column_config.NumberColumn("Share %", format="%.1f"),
            "cumulative_pct": st.column_config.NumberColumn("Cumulative %", format="%.1f"),
        },
        key="pareto_table",
    )
    csv_button(table, "pareto.csv", key="pareto_csv")


if __name__ == "__main__":
    render(context())
