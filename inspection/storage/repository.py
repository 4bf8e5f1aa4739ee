"""The inspection database's unit of work: ``Repository(url).transaction()`` gives a session in a transaction.

Every read and write of the database is a plain function taking that session as its first argument and
never committing, grouped by topic:

* :mod:`~inspection.storage.records`: the frozen records the daemon and the spool hand to storage;
* :mod:`~inspection.storage.frames`: a frame with its defects, alarms, gaps, and the daemon's resume reads;
* :mod:`~inspection.storage.lines`: lines and coils, created on first use;
* :mod:`~inspection.storage.model_registry`: registered bundles and the one active model;
* :mod:`~inspection.storage.reviews`: operators' verdicts and the retrain runs that consume them;
* :mod:`~inspection.storage.retrain_store`, :mod:`~inspection.storage.model_history`, ...: the rest.

A caller opens one transaction and calls as many of them as must commit together (e.g. finish a retrain
run and activate its model); the block commits when it ends and rolls back if it raises.
Supported backends: SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from inspection.storage.db import make_engine, session_factory


class Repository:
    """Transactions over an engine (or a URL it opens itself).

    On SQLite its transactions begin ``IMMEDIATE``: the writer takes the lock up front and waits on the busy
    timeout. Rows returned from a block are detached once it ends: read their columns, not their
    relationships.
    """

    def __init__(self, engine: Engine | str | URL) -> None:
        self._owns_engine = not isinstance(engine, Engine)
        self.engine: Engine = make_engine(engine) if not isinstance(engine, Engine) else engine
        self._sessions = session_factory(self.engine.execution_options(sqlite_begin="IMMEDIATE"))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close pooled connections (only when this repository opened the engine)."""
        if self._owns_engine:
            self.engine.dispose()
