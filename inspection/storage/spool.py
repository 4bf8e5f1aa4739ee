"""Keep results when the database is away: an fsynced append-only spool, its replay, and a writer using both.

Spool format: JSON lines, one record per line, each ``{"v": 1, "len": N, "crc32": "xxxxxxxx", "record": R}``
where ``len`` and ``crc32`` are taken over R's canonical encoding (``json.dumps(R, sort_keys=True,
separators=(",", ":"))``, UTF-8). R is ``{"kind": "frame", "frame": {...}, "defects": [...],
"seen_again": [...]}``, ``{"kind": "alarm", "alarm": {...}}``, ``{"kind": "gap", "gap": {...}}`` or
``{"kind": "coil", "coil": {...}}`` (the records' ``to_dict``). A line that does not parse or whose guard
does not match (a write torn by kill -9 or power loss) is skipped with a warning; the spool
repairs a torn tail before appending, so the next record
never glues onto it.

Replay writes records in file order; every insert is idempotent (frames on ``(source, seq)``, alarms and
gaps on their own keys), so a replay interrupted halfway is simply run again. The file is removed only
after every record is committed. One process writes a given spool file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from inspection.storage.coil_events import CoilEvent, record_coil_event
from inspection.storage.link import DatabaseFileChanged, DatabaseLink
from inspection.storage.repository import AlarmRecord, DefectRecord, FrameRecord, GapRecord

log = logging.getLogger(__name__)

SPOOL_VERSION = 1
WriteOutcome = Literal["stored", "duplicate", "spooled", "held"]


class StorageFull(OSError):
    """Neither the database nor the spool can take a record and the in-memory hold is full (or the
    daemon is aborting): the record is not stored; the caller counts it."""


@dataclass(frozen=True, slots=True)
class SpooledFrame:
    """A frame result waiting in the spool (arguments of ``record_frame``)."""

    frame: FrameRecord
    defects: tuple[DefectRecord, ...] = ()
    seen_again: tuple[str, ...] = ()


SpoolEntry = SpooledFrame | AlarmRecord | GapRecord | CoilEvent


class StorageTarget(Protocol):
    """What replay and ResilientWriter need from a repository (``Repository`` is one)."""

    def record_frame(
        self, frame: FrameRecord, defects: Sequence[DefectRecord] = (), *, seen_again: Sequence[str] = ()
    ) -> bool: ...

    def record_alarm(self, alarm: AlarmRecord) -> bool: ...

    def record_gap(self, gap: GapRecord) -> bool: ...

    def transaction(self) -> AbstractContextManager[Session]: ...


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that mean "the database is not reachable now" (retry later), not "this record is bad".

    Operational errors (server gone, connection refused, database locked, disk I/O), interface errors,
    invalidated connections and pool timeouts are transient, and so is a SQLite file deleted or replaced
    under the daemon (it is reopened); integrity and data errors are not.
    """
    if isinstance(exc, DatabaseFileChanged):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encode_entry(entry: SpoolEntry) -> bytes:
    """One spool line (with its trailing newline) for ``entry``."""
    if isinstance(entry, SpooledFrame):
        record: dict[str, Any] = {
            "kind": "frame",
            "frame": entry.frame.to_dict(),
            "defects": [d.to_dict() for d in entry.defects],
            "seen_again": list(entry.seen_again),
        }
    elif isinstance(entry, GapRecord):
        record = {"kind": "gap", "gap": entry.to_dict()}
    elif isinstance(entry, CoilEvent):
        record = {"kind": "coil", "coil": entry.to_dict()}
    else:
        record = {"kind": "alarm", "alarm": entry.to_dict()}
    body = _canonical(record)
    head = f'{{"v":{SPOOL_VERSION},"len":{len(body)},"crc32":"{zlib.crc32(body):08x}","record":'
    return head.encode("ascii") + body + b"}\n"


def decode_line(line: bytes) -> SpoolEntry:
    """Parse one spool line; ValueError when it is torn or corrupt."""
    try:
        envelope = json.loads(line)
        record = envelope["record"]
        body = _canonical(record)
        if envelope["v"] != SPOOL_VERSION:
            raise ValueError(f"spool format version {envelope['v']!r}, expected {SPOOL_VERSION}")
        if envelope["len"] != len(body) or envelope["crc32"] != f"{zlib.crc32(body):08x}":
            raise ValueError("length/crc32 guard does not match the record")
        if record["kind"] == "frame":
            defects = tuple(DefectRecord.from_dict(d) for d in record["defects"])
            seen_again = tuple(str(t) for t in record.get("seen_again", ()))
            return SpooledFrame(FrameRecord.from_dict(record["frame"]), defects, seen_again)
        if record["kind"] == "alarm":
            return AlarmRecord.from_dict(record["alarm"])
        if record["kind"] == "gap":
            return GapRecord.from_dict(record["gap"])
        if record["kind"] == "coil":
            return CoilEvent.from_dict(record["coil"])
        raise ValueError(f"unknown record kind {record['kind']!r}")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable spool line: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class SpoolLine:
    """One line as read back: its entry, or the reason it was skipped."""

    number: int
    raw: bytes
    entry: SpoolEntry | None
    problem: str | None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """An append-only, fsynced file of frame results and alarms (format in the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r})"

    def pending(self) -> bool:
        """Whether the spool holds anything (records still to replay, or a torn remnant)."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def append(self, entry: SpoolEntry) -> None:
        """Append one record and fsync: once this returns, the record survives a crash."""
        fd = self._open()
        os.write(fd, encode_entry(entry))
        os.fsync(fd)

    def lines(self) -> Iterator[SpoolLine]:
        """Every line in order; torn or corrupt ones come with ``entry=None`` and a ``problem``."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    yield SpoolLine(number, raw, decode_line(raw), None)
                except ValueError as exc:
                    torn = "" if raw.endswith(b"\n") else " (torn last line: written when the process died)"
                    yield SpoolLine(number, raw, None, f"{exc}{torn}")

    def entries(self) -> Iterator[SpoolEntry]:
        """The readable records in order; unreadable lines are skipped with a warning."""
        for line in self.lines():
            if line.entry is None:
                log.warning("%s line %d skipped: %s", self.path, line.number, line.problem)
            else:
                yield line.entry

    def remove(self) -> None:
        """Delete the spool file (durably)."""
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            if created:
                _fsync_dir(self.path.parent)
            else:
                self._repair_tail(fd)
            self._fd = fd
        return self._fd

    def _repair_tail(self, fd: int) -> None:
        """End the file on a newline so that the next record starts a line of its own.

        A complete record that only lacks its newline is kept; a torn one is cut off, with a warning.
        """
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        start = size
        while start > 0:
            chunk_start = max(0, start - 65536)
            chunk = os.pread(fd, start - chunk_start, chunk_start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = chunk_start + cut + 1
                break
            start = chunk_start
        tail = os.pread(fd, size - start, start)
        try:
            decode_line(tail)
        except ValueError as exc:
            log.warning(
                "%s: dropping a torn last record (%d bytes) left by a crash: %s", self.path, len(tail), exc
            )
            os.ftruncate(fd, start)
        else:
            os.write(fd, b"\n")
        os.fsync(fd)


@dataclass
class ReplayResult:
    """What a replay did: ``stored`` new rows, ``duplicates`` already there, ``corrupt`` unreadable lines
    skipped, ``rejected`` records the database refused (both copied to the ``.rejected`` file)."""

    stored: int = 0
    duplicates: int = 0
    corrupt: int = 0
    rejected: int = 0


def rejected_path(spool: Spool) -> Path:
    """Where replay keeps lines it could not store: ``<spool>.rejected`` (JSON lines with the reason)."""
    return spool.path.with_name(spool.path.name + ".rejected")


def _keep_rejected(spool: Spool, line: SpoolLine, reason: str) -> None:
    item = {"line": line.number, "reason": reason, "raw": line.raw.decode("utf-8", errors="replace")}
    with open(rejected_path(spool), "ab") as fh:
        fh.write(json.dumps(item).encode("utf-8") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_entry(repository: StorageTarget, entry: SpoolEntry) -> bool:
    """Store one entry; True when new, False when already stored."""
    if isinstance(entry, SpooledFrame):
        return repository.record_frame(entry.frame, entry.defects, seen_again=entry.seen_again)
    if isinstance(entry, GapRecord):
        return repository.record_gap(entry)
    if isinstance(entry, CoilEvent):
        with repository.transaction() as session:
            return record_coil_event(session, entry)
    return repository.record_alarm(entry)


def replay(spool: Spool, repository: StorageTarget) -> ReplayResult:
    """Write the spool's records to the database in order, then remove the spool.

    A connection error stops the replay and propagates, leaving the spool in place (run it again later:
    records already stored count as duplicates). A record the database refuses for what it is (a constraint,
    an unknown frame for an alarm) is copied to the ``.rejected`` file with the reason and skipped, so one bad
    record cannot block the rest forever.
    """
    result = ReplayResult()
    if not spool.pending():
        return result
    for line in spool.lines():
        if line.entry is None:
            log.warning("%s line %d skipped: %s", spool.path, line.number, line.problem)
            result.corrupt += 1
            _keep_rejected(spool, line, line.problem or "unreadable")
            continue
        try:
            stored = write_entry(repository, line.entry)
        except (sa_exc.IntegrityError, sa_exc.DataError, LookupError, ValueError) as exc:
            log.error(
                "%s line %d refused by the database, kept in %s: %s",
                spool.path,
                line.number,
                rejected_path(spool),
                exc,
            )
            result.rejected += 1
            _keep_rejected(spool, line, f"{type(exc).__name__}: {exc}")
            continue
        if stored:
            result.stored += 1
        else:
            result.duplicates += 1
    spool.remove()
    log.info("%s replayed: %s", spool.path, result)
    return result


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
