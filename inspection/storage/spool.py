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
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from inspection.storage.coil_events import CoilEvent, record_coil_event
from inspection.storage.frames import record_alarm, record_frame, record_gap
from inspection.storage.link import DatabaseFileChanged
from inspection.storage.records import AlarmRecord, DefectRecord, FrameRecord, GapRecord

log = logging.getLogger(__name__)

SPOOL_VERSION = 1
WriteOutcome = Literal["stored", "duplicate", "spooled", "held"]


@dataclass(frozen=True, slots=True)
class SpooledFrame:
    """A frame result waiting in the spool (arguments of ``record_frame``)."""

    frame: FrameRecord
    defects: tuple[DefectRecord, ...] = ()
    seen_again: tuple[str, ...] = ()


SpoolEntry = SpooledFrame | AlarmRecord | GapRecord | CoilEvent


class StorageTarget(Protocol):
    """What replay and ResilientWriter need from a repository (``Repository`` is one): one transaction
    per spool entry."""

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
    """Store one entry in its own transaction; True when new, False when already stored."""
    with repository.transaction() as session:
        if isinstance(entry, SpooledFrame):
            return record_frame(session, entry.frame, entry.defects, seen_again=entry.seen_again)
        if isinstance(entry, GapRecord):
            return record_gap(session, entry)
        if isinstance(entry, CoilEvent):
            return record_coil_event(session, entry)
        return record_alarm(session, entry)


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
