"""Small pieces every page draws the same way: number formats, CSV downloads, empty states."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import TYPE_CHECKING, TypeAlias

import pandas as pd
import streamlit as st

from dashboard.localtime import zone_label

if TYPE_CHECKING:
    # st.column_config's functions return this TypedDict; streamlit exports no public name for it
    from streamlit.elements.lib.column_types import ColumnConfig

    # what st.dataframe's column_config takes: per field a column setting, a heading, or None to hide it
    ColumnSettings: TypeAlias = dict[str, ColumnConfig | str | None]


def fmt_int(value: int) -> str:
    """``1234567`` -> ``"1,234,567"`` (tests read metrics back with :func:`parse_number`)."""
    return f"{int(value):,}"


def fmt_float(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A float with thousands separators, or an em dash when there is nothing to divide by."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def parse_number(text: str) -> float | None:
    """The number in a metric text made by :func:`fmt_int`/:func:`fmt_float` (None for the dash)."""
    cleaned = text.replace(",", "").strip().split(" ")[0]
    return None if cleaned in ("", "—") else float(cleaned)


def delta(current: float | None, previous: float | None) -> str | None:
    """``"+12.5%"`` change against the previous period; None when it cannot be computed."""
    if current is None or previous is None:
        return None
    if previous == 0:
        return None if current == 0 else "new"
    return f"{100.0 * (current - previous) / previous:+.1f}%"


def csv_button(
    data: pd.DataFrame | Callable[[], pd.DataFrame], file_name: str, *, key: str, label: str = "Download CSV"
) -> None:
    """A download button for a table; a callable is only run when the user clicks (big exports)."""
    if callable(data):
        fetch = data

        def payload() -> bytes:
            return fetch().to_csv(index=False).encode("utf-8")

        st.download_button(label, payload, file_name=file_name, mime="text/csv", key=key, on_click="ignore")
    else:
        st.download_button(
            label,
            data.to_csv(index=False).encode("utf-8"),
            file_name=file_name,
            mime="text/csv",
            key=key,
            on_click="ignore",
        )


TIME_COLUMNS = (
    "created_at", "reviewed_at", "defect_created_at", "started_at", "ended_at", "finished_at",
    "activated_at", "processed_at", "graded_at",
)  # fmt: skip
"""Columns holding times: shown in the plant's zone, their heading saying which."""


def table_columns(names: dict[str, str], tz: tzinfo) -> ColumnSettings:
    """``st.dataframe`` column settings: human headings, and the zone named on every time column.

    The data keeps its field names (CSV downloads and tests read those); only the headings change.
    """
    out: ColumnSettings = {}
    for field, heading in names.items():
        if field in TIME_COLUMNS:
            out[field] = st.column_config.DatetimeColumn(
                f"{heading} ({zone_label(tz)})", format="YYYY-MM-DD HH:mm"
            )
        else:
            out[field] = heading
    return out


def empty_state(message: str) -> None:
    """What a page shows instead of charts when the filters select nothing."""
    st.info(message, icon=":material/info:")
