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

from inspection.sources.base import (
    SCHEMES,
    BaseSource,
    MissingExtraError,
    Outage,
    SkipSpec,
    Source,
    SourceError,
    as_skip,
    backoff_delay,
    split_uri,
    utc_now,
)
from inspection.sources.registry import open_source

__all__ = [
    "SCHEMES",
    "BaseSource",
    "MissingExtraError",
    "Outage",
    "SkipSpec",
    "Source",
    "SourceError",
    "as_skip",
    "backoff_delay",
    "open_source",
    "split_uri",
    "utc_now",
]
