"""Alembic environment for the inspection database.

Run programmatically by ``inspection.storage.db.upgrade`` (which passes an open connection in
``config.attributes["connection"]``), or from the command line for new revisions:
``alembic -c inspection/storage/alembic.ini revision --autogenerate -m "what changed"`` (database URL from
``sqlalchemy.url``, else ``$STEEL_DB_URL``, else the default SQLite file).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from inspection.storage.db import default_sqlite_url, make_engine
from inspection.storage.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def _database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or os.environ.get("STEEL_DB_URL") or default_sqlite_url()


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade head --sql``)."""
    _configure(url=_database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_database_url())
    try:
        with engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
