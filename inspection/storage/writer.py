"""The daemon's one database writer: straight to the database, or to the spool while it is away, or (the
spool's disk full too) held in memory up to a bound, then waiting: nothing accepted is dropped silently."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inspection.storage.coil_events import CoilEvent
from inspection.storage.link import DatabaseLink
from inspection.storage.records import AlarmRecord, DefectRecord, FrameRecord, GapRecord
from inspection.storage.spool import (
    Spool,
    SpooledFrame,
    SpoolEntry,
    StorageTarget,
    WriteOutcome,
    is_connection_error,
    replay,
    write_entry,
)

log = logging.getLogger("inspection.storage.spool")


class StorageFull(OSError):
    """Neither the database nor the spool can take a record and the in-memory hold is full (or the
    daemon is aborting): the record is not stored; the caller counts it."""


@dataclass
class WriterStats:
    """Counters for metrics: rows ``stored``, ``duplicates`` ignored, records ``spooled``, ``replayed``
    from the spool, database ``outages`` seen (failed attempts)."""

    stored: int = 0
    duplicates: int = 0
    spooled: int = 0
    replayed: int = 0
    outages: int = 0
    held: int = 0  # records kept in memory because the spool's disk was full too
    blocked: int = 0  # times the writer waited because that hold was full
    last_error: str | None = field(default=None, repr=False)


class ResilientWriter:
    """Writes results to the database, or to the spool while the database is unreachable; never blocks on it.

    A write first goes to the database. On a connection error (``is_connection_error``) the record goes to
    the spool and the database is retried after a backoff (doubling from ``retry_initial_s`` up to
    ``retry_max_s``). While the spool holds records, new ones are appended behind them, so the database
    receives everything in order: the next write after the backoff replays the spool first. ``flush()``
    replays now (call it at start-up, for a spool left by a previous run, and at shutdown). Other errors
    (a bad record) propagate. Not thread-safe: one writer thread owns it.
    """

    def __init__(
        self,
        repository: StorageTarget,
        spool: Spool | str | Path,
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        link: DatabaseLink | None = None,
        hold_max: int = 1000,
        abort: threading.Event | None = None,
    ) -> None:
        self.repository = repository
        self.link = link  # checked and (re)migrated before every attempt
        self.spool = spool if isinstance(spool, Spool) else Spool(spool)
        self.stats = WriterStats()
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._clock = clock
        self._delay_s = retry_initial_s
        self._next_try = float("-inf")
        self.held: deque[SpoolEntry] = deque()  # in order, behind the spool; bounded by hold_max
        self.hold_max = hold_max
        self.blocked = False  # waiting for space: the line is stopped (health red)
        self._abort = abort or threading.Event()

    @property
    def degraded(self) -> bool:
        """True while results wait in the spool or in memory (the database was unreachable)."""
        return bool(self.held) or self.spool.pending()

    @property
    def storage_full(self) -> bool:
        """True while records wait in memory because neither the database nor the spool took them."""
        return bool(self.held)

    def write_frame(
        self, frame: FrameRecord, defects: Sequence[DefectRecord] = (), *, seen_again: Sequence[str] = ()
    ) -> WriteOutcome:
        """Store a frame and its defects (one transaction, see ``record_frame``) or spool them; says which."""
        return self._write(SpooledFrame(frame, tuple(defects), tuple(str(t) for t in seen_again)))

    def write_alarm(self, alarm: AlarmRecord) -> WriteOutcome:
        """Store an alarm or spool it (behind its frame, if that is spooled too)."""
        return self._write(alarm)

    def write_gap(self, gap: GapRecord) -> WriteOutcome:
        """Store a gap in a source's input or spool it."""
        return self._write(gap)

    def write_coil_event(self, event: CoilEvent) -> WriteOutcome:
        """Store a coil start or end or spool it (behind the coil's frames)."""
        return self._write(event)

    def flush(self) -> bool:
        """Replay the spool (and what is held in memory) now, whatever the backoff; True when nothing is
        left behind."""
        return self._drain_held(force=True) and self._try_replay(force=True)

    def close(self) -> bool:
        """Final flush (True when nothing is left behind) and release the spool file."""
        done = self.flush()
        self.spool.close()
        return done

    def _write(self, entry: SpoolEntry) -> WriteOutcome:
        if self.held and not self._drain_held(force=False):
            return self._hold(entry)
        if self.spool.pending() and not self._try_replay(force=False):
            return self._to_spool(entry)
        try:
            self._prepare()
            stored = write_entry(self.repository, entry)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self._failed(exc)
            return self._to_spool(entry)
        self._delay_s = self._retry_initial_s
        if stored:
            self.stats.stored += 1
            return "stored"
        self.stats.duplicates += 1
        return "duplicate"

    def _to_spool(self, entry: SpoolEntry) -> WriteOutcome:
        try:
            self.spool.append(entry)
        except OSError as exc:  # the spool's disk is full (or gone) too
            self._spool_failed(exc)
            return self._hold(entry)
        self.stats.spooled += 1
        return "spooled"

    def _spool_failed(self, exc: OSError) -> None:
        self.spool.close()  # reopened (and its torn tail repaired) on the next append
        if not self.held:
            log.error(
                "STORAGE FULL: database and spool %s both refuse records (%s); holding up to %d in memory, "
                "then stopping the line until space returns",
                self.spool.path,
                exc,
                self.hold_max,
            )

    def _hold(self, entry: SpoolEntry) -> WriteOutcome:
        """Keep ``entry`` in memory, behind what is held already. When the hold is full, wait (the sink
        blocks, so the queues fill and the source stops reading) until the database or the spool takes
        records again; raise :class:`StorageFull` if the daemon aborts meanwhile."""
        while len(self.held) >= self.hold_max:
            self.blocked = True
            self.stats.blocked += 1
            if self._abort.wait(max(self._next_try - self._clock(), 0.2)):
                self.blocked = False
                raise StorageFull(f"not stored: database and spool full, {len(self.held)} records held")
            self._drain_held(force=True)
        self.blocked = False
        self.held.append(entry)
        self.stats.held += 1
        return "held"

    def _drain_held(self, *, force: bool) -> bool:
        """Move held records to the database (after the spool) or, failing that, to the spool; True when
        none is left in memory."""
        if not self.held:
            return True
        if not force and self._clock() < self._next_try:
            return False
        database_up = not self.spool.pending() or self._try_replay(force=True)
        while self.held:
            entry = self.held[0]
            if database_up:
                try:
                    self._prepare()
                    write_entry(self.repository, entry)
                    self.held.popleft()
                    self.stats.stored += 1
                    continue
                except Exception as exc:
                    if not is_connection_error(exc):
                        raise
                    self._failed(exc)
                    database_up = False
            try:
                self.spool.append(entry)
            except OSError:
                self.spool.close()
                return False
            self.held.popleft()
            self.stats.spooled += 1
        log.warning("storage has room again: records held in memory are stored or spooled")
        return True

    def _try_replay(self, *, force: bool) -> bool:
        if not self.spool.pending():
            return True
        if not force and self._clock() < self._next_try:
            return False
        try:
            self._prepare()
            result = replay(self.spool, self.repository)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self._failed(exc)
            return False
        self._delay_s = self._retry_initial_s
        self.stats.replayed += result.stored + result.duplicates
        return True

    def _prepare(self) -> None:
        if self.link is not None:
            self.link.prepare()

    def _failed(self, exc: BaseException) -> None:
        self.stats.outages += 1
        self.stats.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self._next_try = self._clock() + self._delay_s
        log.warning(
            "database unreachable (%s); spooling to %s, retry in %.1f s",
            self.stats.last_error,
            self.spool.path,
            self._delay_s,
        )
        self._delay_s = min(self._delay_s * 2, self._retry_max_s)
