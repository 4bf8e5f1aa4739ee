"""Engines, sessions and Alembic migrations for the inspection database (SQLite default, PostgreSQL by URL).

SQLite engines run in WAL mode (readers never block the daemon's writer) with ``synchronous=NORMAL``
(a commit survives a process crash; power loss may lose the last commits, never corrupt the file),
foreign keys on and a busy timeout. SQLAlchemy, not the ``sqlite3`` module, emits ``BEGIN``, so DDL is
transactional (a migration killed halfway leaves the database as it was) and a connection may ask for
``BEGIN IMMEDIATE`` with the execution option ``sqlite_begin="IMMEDIATE"`` (writers take the write lock up
front and wait on the busy timeout instead of failing on a stale snapshot).

PostgreSQL URLs use psycopg 3 (``postgresql+psycopg://user:pass@host:port/db``); sessions run in UTC,
connecting gives up after 10 s (unless the URL sets ``connect_timeout``), and connections are pinged before
use so that one dropped by a server restart is replaced, not reused.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_SQLITE_PATH = "var/inspection.db"
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_PG_MIGRATION_LOCK = 0x5713E1  # pg_advisory_xact_lock key: one migrator at a time
# Alembic's command API keeps its migration context in module globals (``alembic.context``), so two threads
# of one process upgrading at once corrupt each other (KeyError 'script', migrations on the wrong
# connection). The database locks above order processes; this orders the threads of one process.
_ALEMBIC_LOCK = threading.Lock()


def default_sqlite_url(path: str | Path = DEFAULT_SQLITE_PATH) -> str:
    """``sqlite:///`` URL of ``path`` (relative paths are taken from the current directory)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def make_engine(
    url: str | URL,
    *,
    read_only: bool = False,
    busy_timeout_ms: int = 30_000,
    echo: bool = False,
    create_folder: bool = True,
) -> Engine:
    """An engine set up for the inspection database.

    Args:
        url: SQLAlchemy URL; for a SQLite file its parent folder is created.
        read_only: open SQLite read-only (``mode=ro``) or make PostgreSQL transactions read-only
            (``default_transaction_read_only``), e.g. for the dashboard.
        busy_timeout_ms: how long a SQLite connection waits for a lock before ``database is locked``.
        echo: log every statement.
        create_folder: create a SQLite file's parent folder now (False: the caller does, before it
            connects; the daemon's constructor does no I/O).
    """
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(
            url, read_only=read_only, busy_timeout_ms=busy_timeout_ms, echo=echo, create_folder=create_folder
        )
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        options = [str(url.query["options"])] if "options" in url.query else []
        options.append("-c timezone=UTC")
        if read_only:
            options.append("-c default_transaction_read_only=on")
        connect_args["options"] = " ".join(options)
        url = url.difference_update_query(["options"])
        if (
            "connect_timeout" not in url.query
        ):  # an unreachable server fails fast instead of hanging the writer
            connect_args["connect_timeout"] = 10
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True, echo=echo)


def _sqlite_engine(
    url: URL, *, read_only: bool, busy_timeout_ms: int, echo: bool, create_folder: bool
) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    if not in_memory and not database.startswith("file:"):
        path = Path(database).expanduser()
        if read_only:
            url = url.set(database=f"file:{path.resolve()}").update_query_dict({"mode": "ro", "uri": "true"})
        elif create_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see module docstring)
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory and not read_only:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = str(conn.get_execution_options().get("sqlite_begin", "DEFERRED")).upper()
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"sqlite_begin={mode!r}: expected DEFERRED, IMMEDIATE or EXCLUSIVE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (``expire_on_commit=False``)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str | URL | None = None) -> Config:
    """Alembic configuration pointing at this package's migrations; no ``alembic.ini`` needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        cfg.set_main_option(
            "sqlalchemy.url", make_url(url).render_as_string(hide_password=False).replace("%", "%%")
        )
    return cfg


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default the latest); a database already there is left alone.

    The whole upgrade runs in one transaction that holds the write lock (SQLite ``BEGIN IMMEDIATE``,
    a PostgreSQL advisory lock), so concurrent callers (daemon and dashboard starting together) queue up
    and a killed migration leaves nothing half-done.
    """
    engine, owned = _as_engine(target)
    try:
        with _ALEMBIC_LOCK, engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                cfg = alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
    finally:
        if owned:
            engine.dispose()


def current_revision(target: str | URL | Engine) -> str | None:
    """The database's Alembic revision; ``None`` for a database never migrated."""
    engine, owned = _as_engine(target)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if owned:
            engine.dispose()


def head_revision() -> str:
    """The newest revision the code knows; ``current_revision(db) == head_revision()`` means up to date."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _as_engine(target: str | URL | Engine) -> tuple[Engine, bool]:
    if isinstance(target, Engine):
        return target, False
    return make_engine(target), True
