"""How pages reach the database: one cached engine per URL, cached query results, the page context.

Pages call :func:`q` with a query function of :mod:`dashboard.queries`; results are kept for the config's
``cache_ttl_s`` (keyed by the function, URL, filters and arguments), so switching pages or widgets does
not re-aggregate a million rows. The engine is shared by every session of the server
(``st.cache_resource``); sessions only share immutable results.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from dashboard import queries
from dashboard.config import DashboardConfig
from dashboard.filters import FilterOptions, Filters
from dashboard.localtime import plant_zone
from dashboard.media import confined_media_path, media_roots
from inspection.storage.db import make_engine
from inspection.storage.grading import GradingRules, grade_closed_coils
from inspection.storage.paths import live_frame_path

T = TypeVar("T")
_CONTEXT_KEY = "steel_page_context"


@dataclass(frozen=True, slots=True)
class PageContext:
    """What the entry script hands every page: settings, the filter choice, the signed-in user."""

    config: DashboardConfig
    filters: Filters
    options: FilterOptions
    user: str | None = None

    @property
    def db_url(self) -> str:
        return self.config.db_url

    @property
    def tz(self) -> ZoneInfo:
        """The plant's time zone (validated with the config)."""
        return plant_zone(self.config.plant_timezone)


def set_context(ctx: PageContext) -> None:
    st.session_state[_CONTEXT_KEY] = ctx


def context() -> PageContext:
    """The context the entry script stored for this run (pages run after it, in the same session)."""
    ctx = st.session_state.get(_CONTEXT_KEY)
    if ctx is None:
        st.error("Open the dashboard through its entry script: `steel dashboard` (dashboard/app.py).")
        st.stop()
    return ctx


@st.cache_resource(show_spinner=False)
def engine(url: str, read_only: bool = False) -> Engine:
    """The engine of ``url``, made once per server process."""
    return make_engine(url, read_only=read_only)


def query_engine(config: DashboardConfig) -> Engine:
    return engine(config.db_url, config.read_only)


@st.cache_data(ttl=3600, max_entries=1000, show_spinner=False)
def _cached(name: str, url: str, read_only: bool, epoch: int, args: tuple, kwargs: tuple) -> Any:
    del epoch  # only part of the cache key: a new epoch every cache_ttl_s seconds
    return getattr(queries, name)(engine(url, read_only), *args, **dict(kwargs))


def q(ctx: PageContext, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(engine, *args, **kwargs)`` for a function of :mod:`dashboard.queries`, cached for a while."""
    if getattr(queries, fn.__name__, None) is not fn:
        raise ValueError(f"{fn!r} is not a function of dashboard.queries")
    ttl = ctx.config.cache_ttl_s
    if ttl <= 0:
        return fn(query_engine(ctx.config), *args, **kwargs)
    epoch = int(time.time() // ttl)
    return _cached(fn.__name__, ctx.db_url, ctx.config.read_only, epoch, args, tuple(sorted(kwargs.items())))


@st.cache_data(ttl=3600, max_entries=100, show_spinner=False)
def _grade_pending(url: str, rules_json: str, epoch: int) -> int:
    del epoch  # part of the key: look for newly closed coils once per cache period
    rules = GradingRules.model_validate_json(rules_json)
    with Session(engine(url, False)) as session, session.begin():
        return grade_closed_coils(session, rules, ungraded_only=True)


def grade_pending_coils(ctx: PageContext) -> int:
    """Grade the closed coils that have no grade at all (closed by an older daemon, or by hand) under the
    config's rules; how many were graded. The daemon grades every coil it closes, and regrades under new
    rules when it restarts with them: the dashboard never replaces a grade it stored.

    Only a writable dashboard grades (a read-only one shows the grades others stored). Looked for once
    per ``cache_ttl_s``; when coils were graded, cached results are dropped so pages show the grades.
    """
    if ctx.config.read_only:
        return 0
    epoch = int(time.time() // max(ctx.config.cache_ttl_s, 1.0))
    graded = _grade_pending(ctx.db_url, ctx.config.grading_rules.model_dump_json(), epoch)
    if graded:
        _cached.clear()
    return graded


def clear_query_cache() -> None:
    """Forget cached results (after a review is written, so the pages show it at once)."""
    _cached.clear()


def live_image(ctx: PageContext, line: str, kept_image: str | None = None) -> Path | None:
    """The daemon's live image of ``line`` (``<output.dir>/live/<line>.jpg``), or None when there is none.

    The folder is ``live_dir`` when configured; else the one beside the kept frame images
    (``<output.dir>/frames/<source>/<seq>.jpg``), else ``inspection/live`` beside the SQLite database
    (where ``steel inspect`` and ``make demo`` put it).
    """
    name = live_frame_path("", line).name
    folders: list[Path] = []
    if ctx.config.live_dir:
        folders.append(Path(ctx.config.live_dir))
    if kept_image:
        kept = media_path(ctx, kept_image)
        if kept is not None and kept.parent.parent.name == "frames":
            folders.append(kept.parent.parent.parent / "live")
    db_folder = _sqlite_folder(ctx.db_url)
    if db_folder is not None:
        folders.append(db_folder / "inspection" / "live")
    for folder in folders:
        found = media_path(ctx, str(folder / name))
        if found is not None:
            return found
    return None


def _sqlite_folder(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database.removeprefix("file:")).parent
    return None


def media_path(ctx: PageContext, stored: str | None) -> Path | None:
    """The file a stored ``crop_path``/``image_path`` names, or None when there is none on disk or it
    lies outside the media roots (see :mod:`dashboard.media`: ``media_root``, else the SQLite database's
    folder, the current directory and the repository)."""
    roots = media_roots(
        media_root=ctx.config.media_root, live_dir=ctx.config.live_dir, db_folder=_sqlite_folder(ctx.db_url)
    )
    return confined_media_path(stored, roots)
