"""Entry script of the QA dashboard: ``streamlit run dashboard/app.py -- --db URL [--config FILE]``.

Use ``steel dashboard`` rather than calling Streamlit by hand. The database URL and config file may
also come from ``STEEL_DASHBOARD_DB`` and ``STEEL_DASHBOARD_CONFIG`` (command-line options win). This
script draws the shared sidebar (login, filters) and then runs the chosen page; pages read the context
it stores. It reads SQL only: nothing here imports torch or the model code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # `streamlit run` puts dashboard/ first
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402

from dashboard import queries  # noqa: E402
from dashboard.auth import require_login  # noqa: E402
from dashboard.config import DashboardConfig, load_dashboard_config  # noqa: E402
from dashboard.data import PageContext, q, query_engine, set_context  # noqa: E402
from dashboard.filters import FilterOptions, Filters, render_filters  # noqa: E402
from dashboard.localtime import plant_zone  # noqa: E402
from datasets.settings import ConfigError  # noqa: E402

# Served by the dashboard's own server: a ``:material/...:`` page icon makes the browser fetch the
# favicon from a public font host, which an offline plant network blocks. (A comment, not a docstring:
# Streamlit's "magic" would draw a bare string of the entry script on every page.)
FAVICON = Path(__file__).resolve().parent / "static" / "favicon.png"

PAGES = (
    ("views/overview.py", "Overview", ":material/dashboard:"),
    ("views/trends.py", "Trends", ":material/show_chart:"),
    ("views/pareto.py", "Pareto", ":material/bar_chart:"),
    ("views/coil_map.py", "Coil map", ":material/map:"),
    ("views/gallery.py", "Gallery", ":material/photo_library:"),
    ("views/review.py", "Review", ":material/fact_check:"),
    ("views/models.py", "Models", ":material/model_training:"),
    ("views/live.py", "Live", ":material/videocam:"),
)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db", default=os.environ.get("STEEL_DASHBOARD_DB"))
    parser.add_argument("--config", default=os.environ.get("STEEL_DASHBOARD_CONFIG"))
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def _config() -> DashboardConfig:
    args = _arguments()
    try:
        return load_dashboard_config(args.config, db_url=args.db)
    except ConfigError as exc:
        st.error(f"The dashboard config is invalid:\n\n```\n{exc}\n```")
        st.stop()
        raise


def _check_database(config: DashboardConfig) -> FilterOptions:
    url = make_url(config.db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database.removeprefix("file:"))
        if not path.is_file():
            st.error(
                f"No inspection database at `{path}`. Run the daemon first (`steel inspect ...`) "
                "or point the dashboard at one with `steel dashboard --db URL`."
            )
            st.stop()
    probe = PageContext(config=config, filters=Filters(), options=FilterOptions())
    try:
        problem = queries.schema_problem(query_engine(config))
        if problem is None:
            return q(probe, queries.filter_options)
    except SQLAlchemyError as exc:
        problem = f"cannot read it: {exc.__class__.__name__}: {exc}"
    st.error(f"Database `{url.render_as_string(hide_password=True)}`: {problem}.")
    st.stop()
    raise AssertionError("unreachable")


def main() -> None:
    config = _config()
    st.set_page_config(page_title=config.title, page_icon=str(FAVICON), layout="wide")
    user = require_login(config.auth.users) if config.auth.enabled else None
    options = _check_database(config)
    st.sidebar.caption(config.title)
    filters = render_filters(
        options, default_preset=config.default_time_range, tz=plant_zone(config.plant_timezone)
    )
    set_context(PageContext(config=config, filters=filters, options=options, user=user))
    pages = [
        st.Page(path, title=title, icon=icon, default=(k == 0)) for k, (path, title, icon) in enumerate(PAGES)
    ]
    st.navigation(pages).run()


main()
