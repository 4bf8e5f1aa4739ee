"""Database fixtures for the inspection tests: a SQLite file per test and, when configured, PostgreSQL.

``db_url`` is parametrised over both backends; its PostgreSQL case carries the ``postgres`` mark and is
skipped only when ``STEEL_TEST_PG_URL`` is unset (CI sets it, e.g.
``postgresql+psycopg://steel:steel@127.0.0.1:55432/steel_test``). Each PostgreSQL test gets a database of
its own, created from that URL (the role needs CREATEDB) and dropped afterwards.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from inspection.storage.db import default_sqlite_url, upgrade
from inspection.storage.repository import Repository
from tests.inspection.daemon_fixtures import model_bundle_fixture, swap_bundle_fixture  # noqa: F401 - registers them

PG_ENV = "STEEL_TEST_PG_URL"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file (not created yet) in a folder that does not exist yet."""
    return default_sqlite_url(tmp_path / "var" / "inspection.db")


@pytest.fixture
def pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL server to test against")
    return url


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test (dropped afterwards)."""
    name = f"steel_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        _drop_database(admin, name)
    finally:
        admin.dispose()


def _terminate_own_connections(conn: Connection, database: str) -> None:
    """End this role's sessions on ``database`` (not the server's own workers, which need a superuser)."""
    conn.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :db AND usename = current_user AND pid <> pg_backend_pid()"
        ),
        {"db": database},
    )


def _drop_database(admin: Engine, name: str) -> None:
    # Plain DROP DATABASE (not WITH (FORCE), which may not end an autovacuum worker for a non-superuser):
    # the server stops its own workers; sessions a test left open are ended first.
    for attempt in range(10):
        with admin.connect() as conn:
            _terminate_own_connections(conn, name)
            try:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
                return
            except DBAPIError:
                if attempt == 9:
                    raise
        time.sleep(0.5)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each backend."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    """A repository over a freshly migrated database of each backend."""
    upgrade(db_url)
    repository = Repository(db_url)
    yield repository
    repository.dispose()
