"""Frame sources: each is an iterator of :data:`~inspection.messages.SourceEvent` with ``close()``.

:func:`open_source` builds one from a URI:

===================  ==========================================================================
``folder:PATH``      image files in a folder, in name order, each once (:mod:`.folder`)
``video:PATH_OR_URL``  a video file or a stream URL (RTSP, HTTP) via OpenCV (:mod:`.video`)
``camera:INDEX``     a local camera via OpenCV, reconnected with backoff (:mod:`.video`)
``strip-sim:SPEC``   a simulated line-scan strip made of NEU-DET images (:mod:`.strip_sim`)
``genicam:CTI``      a GenICam camera through Harvesters, optional extra (:mod:`.genicam`)
===================  ==========================================================================

A source never raises for a bad input (that becomes a :class:`~inspection.messages.FailedFrame`)
nor for a disconnect (that becomes a reconnect and a :class:`~inspection.messages.SourceGap`); it
raises :class:`SourceError` only when it gives up. Every wait inside a source is on its stop event,
so ``close()`` (or setting the ``stop`` event shared with the daemon) ends iteration promptly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Generator, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from inspection.messages import SourceEvent, SourceGap

__all__ = [
    "SCHEMES",
    "BaseSource",
    "MissingExtraError",
    "Outage",
    "Source",
    "SourceError",
    "backoff_delay",
    "open_source",
    "utc_now",
]

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


def open_source(uri: str, **options: Any) -> Source:
    """Build the source a URI names.

    Args:
        uri: ``folder:PATH``, ``video:PATH_OR_URL``, ``camera:INDEX``, ``strip-sim:SPEC`` or
            ``genicam:CTI_FILE`` (see the module docstring).
        **options: passed to the source's constructor (e.g. ``follow``, ``skip``, ``stop``,
            ``max_attempts``, ``images``); each source documents its own.

    Raises:
        ValueError: an unknown scheme or a malformed URI.
        MissingExtraError: ``genicam:`` without the ``harvesters`` package.
    """
    scheme, rest = split_uri(uri)
    if not rest and scheme != "strip-sim":
        raise ValueError(f"source {uri!r}: nothing after {scheme + ':'!r}")
    if scheme == "folder":
        from inspection.sources.folder import FolderSource

        return FolderSource(rest, **options)
    if scheme in ("video", "camera"):
        from inspection.sources.video import VideoSource

        if scheme == "camera":
            try:
                index = int(rest)
            except ValueError:
                raise ValueError(f"source {uri!r}: camera index must be an integer") from None
            options.setdefault("name", f"camera:{index}")
            return VideoSource(index, **options)
        options.setdefault("name", uri)
        return VideoSource(rest, **options)
    if scheme == "strip-sim":
        from inspection.sources.strip_sim import StripSimulator

        options.setdefault("name", uri)
        return StripSimulator.from_spec(rest, **options)
    from inspection.sources.genicam import GenICamSource

    options.setdefault("name", uri)
    return GenICamSource(rest, **options)
