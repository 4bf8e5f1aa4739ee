"""What every frame source shares: the ``Source`` protocol, errors, backoff, the stop-aware base class
and the outage bookkeeping of reconnecting sources. Source modules import this module, never the package
(whose ``open_source`` imports them: that would be an import cycle)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Generator, Iterator
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from inspection.messages import SourceEvent, SourceGap

SCHEMES: tuple[str, ...] = ("folder", "video", "camera", "strip-sim", "genicam")


class SourceError(RuntimeError):
    """A source cannot go on (e.g. it gave up reconnecting); the message names the source."""


class MissingExtraError(ImportError):
    """A source needs an optional dependency that is not installed; the message says how to install it."""


@runtime_checkable
class Source(Protocol):
    """What the daemon's source stage consumes."""

    name: str

    def __iter__(self) -> Iterator[SourceEvent]: ...

    def close(self) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def backoff_delay(failures: int, *, initial_s: float, max_s: float, factor: float) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1-based): exponential, capped.

    ``initial_s * factor ** (failures - 1)``, at most ``max_s``.
    """
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    return float(min(max_s, initial_s * factor ** (failures - 1)))


SkipSpec = Callable[[int], bool] | Container[int] | None


def as_skip(skip: SkipSpec) -> Callable[[int], bool]:
    """``skip`` as a predicate on sequence numbers (a callable, a set of seqs already done, or None)."""
    if skip is None:
        return lambda seq: False
    if callable(skip):
        return skip
    return lambda seq: seq in skip


class BaseSource:
    """Common plumbing: a name, a stop event, an injectable wait and clock, context-manager use.

    Args:
        name: the stable source name written with every frame (with ``seq``, the frame's database key).
        stop: an event shared with the daemon; ``close()`` sets it. A private one when ``None``.
        wait: ``wait(seconds) -> bool`` sleeps and returns ``True`` when the source should stop;
            defaults to ``stop.wait``. Tests inject one to run backoff without sleeping.
        now: the clock for timestamps (timezone-aware); tests inject a fake.
    """

    def __init__(
        self,
        name: str,
        *,
        stop: threading.Event | None = None,
        wait: Callable[[float], bool] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.name = name
        self._stop = stop if stop is not None else threading.Event()
        self._wait_fn = wait
        self._now = now or utc_now

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped; ``True`` means stop now."""
        if self._wait_fn is not None:
            return bool(self._wait_fn(seconds)) or self._stop.is_set()
        return self._stop.wait(max(0.0, seconds))

    def close(self) -> None:
        """Ask the source to stop; iteration ends at its next check (within one wait or read)."""
        self._stop.set()

    def __iter__(self) -> Iterator[SourceEvent]:  # pragma: no cover - every source overrides it
        raise NotImplementedError

    def __enter__(self) -> BaseSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Outage:
    """The consecutive failed attempts of a reconnecting source, reported as one ``SourceGap``.

    The video/camera and GenICam sources share it: after a failed open or read, ``yield from
    outage.failed()`` waits the backoff (its value is ``True`` when the source was stopped meanwhile) or,
    at ``max_attempts``, yields the closing gap and raises :class:`SourceError`; after a good read,
    ``yield from outage.recovered(at)`` reports the gap, if there was one, and resets the count.
    """

    def __init__(
        self, source: BaseSource, *, what: str, max_attempts: int | None, backoff: dict[str, float]
    ) -> None:
        self._source = source
        self.what = what  # "read rtsp://...": completes "gave up after N failed attempts to ..."
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.failures = 0
        self.started: datetime | None = None

    def failed(self) -> Generator[SourceGap, None, bool]:
        self.failures += 1
        now = self._source._now()
        self.started = self.started or now
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            yield SourceGap(
                self._source.name,
                self.started,
                now,
                f"gave up after {self.failures} failed attempts to {self.what}",
            )
            raise SourceError(f"{self._source.name}: gave up after {self.failures} failed attempts")
        return self._source._wait(backoff_delay(self.failures, **self.backoff))

    def recovered(self, at: datetime, verb: str = "reconnected") -> Iterator[SourceGap]:
        if self.started is not None:
            yield SourceGap(
                self._source.name, self.started, at, f"{verb} after {self.failures} failed attempt(s)"
            )
        self.started = None
        self.failures = 0


def split_uri(uri: str) -> tuple[str, str]:
    """``"scheme:rest"`` -> ``(scheme, rest)``; only the first ``:`` splits, so URLs and paths stay whole."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"source {uri!r}: expected one of {', '.join(s + ':...' for s in SCHEMES)}")
    return scheme.lower(), rest
