"""The daemon's link to its database, as something that can be missing at start, go away and come back.

:class:`DatabaseLink` migrates the database the first time it is reachable (so a daemon started while the
server is down spools and catches up later) and, for a SQLite file, notices when the file the engine
opened is no longer the one at its path (deleted, or replaced by another file): SQLite would go on writing
into the unlinked inode and every commit would "succeed" into a file nobody can open again. The writer
treats both as an outage: it spools, and the next attempt reopens the path (migrating a new file) and
replays the spool into it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from inspection.storage.db import upgrade

log = logging.getLogger(__name__)


class DatabaseFileChanged(Exception):
    """The SQLite file the daemon opened was deleted or replaced under it (treated as an outage)."""


def sqlite_file(engine: Engine) -> Path | None:
    """The file a SQLite engine writes (``None`` for an in-memory database or another backend)."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class DatabaseLink:
    """Readiness and file identity of the daemon's database.

    Args:
        engine: the daemon's engine.
        on_ready: called once each time the database becomes ready (migrated and reachable), e.g. to
            register the running model; it may raise a connection error like any write.
    """

    def __init__(self, engine: Engine, *, on_ready: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.path = sqlite_file(engine)
        self.on_ready = on_ready
        self.ready = False
        self.reopened = 0  # times the database file was found deleted or replaced
        self._identity: tuple[int, int] | None = None

    def ensure_ready(self) -> None:
        """Migrate the database if this link has not yet (or no longer has) a ready one; raises the
        driver's connection error when it is unreachable."""
        if self.ready:
            return
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        upgrade(self.engine)
        if self.path is not None:
            self._identity = _identity(self.path)
        self.ready = True
        if self.on_ready is not None:
            self.on_ready()

    def check(self) -> None:
        """Raise :class:`DatabaseFileChanged` when the SQLite file at the path is not the one opened."""
        if not self.ready or self.path is None:
            return
        now = _identity(self.path)
        if now == self._identity:
            return
        self.ready = False
        self.reopened += 1
        self.engine.dispose()  # pooled connections still point at the old inode
        what = "deleted" if now is None else "replaced by another file"
        log.error("database file %s was %s while the daemon ran: spooling, then reopening", self.path, what)
        raise DatabaseFileChanged(f"database file {self.path} was {what}")

    def prepare(self) -> None:
        """Before each write: the file is still ours, and the database is migrated."""
        self.check()
        self.ensure_ready()
