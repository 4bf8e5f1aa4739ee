"""The filters every page shares: time range, line, coil, class, minimum score and model version.

:class:`Filters` is a frozen value (hashable, so it keys the query cache) that :mod:`dashboard.queries`
turns into ``WHERE`` clauses; :func:`render_filters` draws the sidebar widgets of the entry script, so the
choice survives switching pages. Times are aware UTC; a range is ``[start, end)``; ``None`` means open.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TypedDict, Unpack

import streamlit as st

from dashboard.localtime import CUSTOM, TIME_PRESETS, local_midnight, zone_label


class FilterChanges(TypedDict, total=False):
    """The fields :meth:`Filters.with_` may change, with their types (so a misspelt field is caught)."""

    start: datetime | None
    end: datetime | None
    line_ids: tuple[int, ...]
    coil_ids: tuple[int, ...]
    classes: tuple[str, ...]
    min_score: float
    model_version_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """What the pages show. Empty tuples mean "all"; ``min_score`` 0 means no score threshold.

    ``classes`` and ``min_score`` select defects only; the other fields select frames too, so rates
    (defects per frame, per metre) use the inspected frames of the same lines, coils, models and time.
    """

    start: datetime | None = None
    end: datetime | None = None
    line_ids: tuple[int, ...] = ()
    coil_ids: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    min_score: float = 0.0
    model_version_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"Filters.{name} must be timezone-aware (UTC), got {value!r}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"Filters: end {self.end} is not after start {self.start}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"Filters.min_score must be in [0, 1], got {self.min_score}")

    def previous_period(self) -> Filters | None:
        """The same filters over the period of equal length just before; None for an open range."""
        if self.start is None or self.end is None:
            return None
        length = self.end - self.start
        return dataclasses.replace(self, start=self.start - length, end=self.start)

    def with_(self, **changes: Unpack[FilterChanges]) -> Filters:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterOptions:
    """What the filters can offer, read from the database by ``queries.filter_options``.

    ``lines`` are ``(id, name)``, ``coils`` ``(id, line_id, label)``, ``model_versions``
    ``(id, version, is_active)``; ``first_at``/``last_at`` bound the stored defects and frames.
    """

    lines: tuple[tuple[int, str], ...] = ()
    coils: tuple[tuple[int, int, str], ...] = ()
    classes: tuple[str, ...] = ()
    model_versions: tuple[tuple[int, str, bool], ...] = ()
    first_at: datetime | None = None
    last_at: datetime | None = None


def time_range(
    preset: str, *, now: datetime, custom: tuple[date, date] | None = None, tz: tzinfo = UTC
) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` (aware UTC) of a preset, ending at ``now`` rounded up to the next minute.

    Rounding keeps the range (and so the query cache key) stable across the reruns of one minute.
    A custom range covers whole days of the plant's calendar (``tz``), its last day included.
    """
    if preset not in TIME_PRESETS:
        raise ValueError(f"unknown time range {preset!r}; expected one of {list(TIME_PRESETS)}")
    if preset == CUSTOM:
        if custom is None:
            return None, None
        first, last = sorted(custom)
        return local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)
    span = TIME_PRESETS[preset]
    if span is None:
        return None, None
    end = now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - span, end


# ---------------------------------------------------------------- sidebar widgets


def render_filters(
    options: FilterOptions, *, default_preset: str = "Last 7 days", tz: tzinfo = UTC
) -> Filters:
    """Draw the shared filters in the sidebar and return the current choice.

    Widget keys start with ``flt_`` (tests set them through ``AppTest``); options come from the database.
    """
    sb = st.sidebar
    sb.header("Filters")
    presets = list(TIME_PRESETS)
    preset = sb.selectbox(
        "Time range",
        presets,
        index=presets.index(default_preset) if default_preset in presets else 0,
        key="flt_time",
    )
    custom = None
    if preset == CUSTOM:
        today = datetime.now(tz).date()
        first = options.first_at.astimezone(tz).date() if options.first_at else today
        picked = sb.date_input(f"Days ({zone_label(tz)})", value=(first, today), key="flt_days")
        if isinstance(picked, tuple | list) and len(picked) == 2:
            custom = (picked[0], picked[1])
    start, end = time_range(preset, now=datetime.now(UTC), custom=custom, tz=tz)

    line_names = dict(options.lines)
    line_ids = sb.multiselect(
        "Line", list(line_names), format_func=lambda i: line_names.get(i, str(i)), key="flt_lines"
    )
    coil_labels = {cid: label for cid, lid, label in options.coils if not line_ids or lid in line_ids}
    coil_ids = sb.multiselect(
        "Coil", list(coil_labels), format_func=lambda i: coil_labels.get(i, str(i)), key="flt_coils"
    )
    classes = sb.multiselect("Class", list(options.classes), key="flt_classes")
    min_score = sb.slider("Minimum score", 0.0, 1.0, 0.0, 0.05, key="flt_min_score")
    versions = {vid: name + (" (active)" if active else "") for vid, name, active in options.model_versions}
    version_ids = sb.multiselect(
        "Model version", list(versions), format_func=lambda i: versions.get(i, str(i)), key="flt_models"
    )
    return Filters(
        start=start,
        end=end,
        line_ids=tuple(sorted(line_ids)),
        coil_ids=tuple(sorted(c for c in coil_ids if c in coil_labels)),
        classes=tuple(sorted(classes)),
        min_score=float(min_score),
        model_version_ids=tuple(sorted(version_ids)),
    )
