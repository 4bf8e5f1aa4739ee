"""``genicam:CTI_FILE``: a GenICam camera (GigE Vision, USB3 Vision, CoaXPress) through Harvesters.

Harvesters is an optional extra (``pip install .[genicam]``); it is imported when the source is
built, and its absence is a :class:`~inspection.sources.MissingExtraError` that says how to install it.
The URI names the GenTL producer (``.cti`` file) of the camera vendor; ``device=`` picks the camera
(an index, a serial number, or a Harvesters search dict).

Area cameras give one frame per buffer (``seq`` = microseconds since the epoch, as for live video).
With ``frame_lines=`` the buffers are line blocks from a line-scan camera: they are numbered by a
running line count (the encoder count itself needs vendor chunk data, which this source does not
read) and assembled into overlapping frames by :class:`~inspection.sources.linescan.LineScanSource`.
A fetch that times out or fails is a disconnect: the acquirer is destroyed and recreated with the
same backoff as :mod:`~inspection.sources.video`, and the outage becomes a
:class:`~inspection.messages.SourceGap`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import cv2
import numpy as np

from inspection.constants import (
    DEFAULT_FRAME_OVERLAP_LINES,
    GENICAM_FETCH_TIMEOUT_S,
    RECONNECT_BACKOFF_FACTOR,
    RECONNECT_INITIAL_BACKOFF_S,
    RECONNECT_MAX_ATTEMPTS,
    RECONNECT_MAX_BACKOFF_S,
)
from inspection.messages import FailedFrame, Frame, SourceEvent, SourceGap
from inspection.sources.base import BaseSource, MissingExtraError, Outage
from inspection.sources.linescan import LineBlock, LineScanSource

MISSING_EXTRA_MESSAGE = "genicam source needs the optional extra: pip install .[genicam]"

_MONO_BITS = {"Mono8": 8, "Mono10": 10, "Mono12": 12, "Mono14": 14, "Mono16": 16}


def import_harvester() -> Callable[[], Any]:
    """``harvesters.core.Harvester``, or a :class:`MissingExtraError` naming the extra to install."""
    try:
        from harvesters.core import Harvester  # an optional extra (.[genicam]): only GenICam cameras need it
    except ImportError as exc:
        raise MissingExtraError(MISSING_EXTRA_MESSAGE) from exc
    return Harvester


def to_uint8(data: np.ndarray, height: int, width: int, pixel_format: str) -> np.ndarray | str:
    """A GenICam buffer component as ``(H, W)`` or ``(H, W, 3)`` BGR uint8, or why it cannot be.

    Mono10..16 keep their top 8 bits; RGB8 is reordered to BGR; Bayer8 formats are demosaiced.
    """
    flat = np.asarray(data)
    if pixel_format in _MONO_BITS:
        bits = _MONO_BITS[pixel_format]
        if flat.size != height * width:
            return f"{pixel_format}: {flat.size} values for {height}x{width} pixels"
        image = flat.reshape(height, width)
        return (
            image.astype(np.uint8) if bits == 8 else (image.astype(np.uint16) >> (bits - 8)).astype(np.uint8)
        )
    if pixel_format in ("RGB8", "BGR8"):
        if flat.size != height * width * 3:
            return f"{pixel_format}: {flat.size} values for {height}x{width}x3 pixels"
        color = flat.astype(np.uint8).reshape(height, width, 3)
        return color[..., ::-1].copy() if pixel_format == "RGB8" else color
    bayer = {
        "BayerRG8": cv2.COLOR_BayerRG2BGR,
        "BayerGR8": cv2.COLOR_BayerGR2BGR,
        "BayerBG8": cv2.COLOR_BayerBG2BGR,
        "BayerGB8": cv2.COLOR_BayerGB2BGR,
    }
    if pixel_format in bayer and flat.size == height * width:
        return cv2.cvtColor(flat.astype(np.uint8).reshape(height, width), bayer[pixel_format])
    return f"unsupported pixel format {pixel_format!r}"


class GenICamSource(BaseSource):
    """Frames from a GenICam camera.

    Args:
        cti: path of the GenTL producer (``.cti``).
        name: source name; default ``genicam:<cti>``.
        device: camera index, serial number (str) or a Harvesters search dict.
        timeout_s: fetch timeout; a timeout counts as a disconnect.
        frame_lines, overlap_lines: line-scan mode (see the module docstring); ``None`` = area camera.
        color: ``"gray"`` converts colour buffers to ``(H, W)``.
        max_attempts, initial_backoff_s, max_backoff_s, backoff_factor: reconnect policy.
        harvester_factory: ``() -> Harvester``; default Harvesters' (tests inject a fake).
        line_id, coil, stop, wait, now: as for the other sources.

    Raises:
        MissingExtraError: Harvesters is not installed (and no factory was given).
    """

    def __init__(
        self,
        cti: str,
        *,
        name: str | None = None,
        device: int | str | dict[str, Any] = 0,
        timeout_s: float = GENICAM_FETCH_TIMEOUT_S,
        frame_lines: int | None = None,
        overlap_lines: int = DEFAULT_FRAME_OVERLAP_LINES,
        color: str = "gray",
        max_attempts: int | None = RECONNECT_MAX_ATTEMPTS,
        initial_backoff_s: float = RECONNECT_INITIAL_BACKOFF_S,
        max_backoff_s: float = RECONNECT_MAX_BACKOFF_S,
        backoff_factor: float = RECONNECT_BACKOFF_FACTOR,
        harvester_factory: Callable[[], Any] | None = None,
        line_id: str = "",
        coil: str | None = None,
        stop: threading.Event | None = None,
        wait: Callable[[float], bool] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(name or f"genicam:{cti}", stop=stop, wait=wait, now=now)
        self._factory = harvester_factory or import_harvester()
        self.cti = cti
        self.device = {"serial_number": device} if isinstance(device, str) else device
        self.timeout_s = timeout_s
        self.frame_lines = frame_lines
        self.overlap_lines = overlap_lines
        self.color = color
        self.max_attempts = max_attempts
        self._backoff = {"initial_s": initial_backoff_s, "max_s": max_backoff_s, "factor": backoff_factor}
        self.line_id = line_id
        self.coil = coil
        self._last_seq = -1

    def _connect(self) -> tuple[Any, Any] | None:
        harvester = acquirer = None
        try:
            harvester = self._factory()
            harvester.add_file(self.cti)
            harvester.update()
            acquirer = harvester.create(self.device)
            acquirer.start()
            return harvester, acquirer
        except Exception:  # no device, producer error: retried with backoff
            self._disconnect(harvester, acquirer)
            return None

    @staticmethod
    def _disconnect(harvester: Any, acquirer: Any) -> None:
        for action in (lambda: acquirer.stop(), lambda: acquirer.destroy(), lambda: harvester.reset()):
            try:
                action()
            except Exception:  # already gone; nothing more to release
                pass

    def _images(self) -> Iterator[tuple[datetime, np.ndarray | str] | SourceGap]:
        """Decoded buffers (or why a buffer is unusable) and outage gaps; raises when giving up."""
        conn = None
        outage = Outage(
            self, what=f"fetch from {self.cti}", max_attempts=self.max_attempts, backoff=self._backoff
        )
        try:
            while not self.stopped:
                if conn is None:
                    conn = self._connect()
                result = None
                if conn is not None:
                    try:
                        with conn[1].fetch(timeout=self.timeout_s) as buffer:
                            part = buffer.payload.components[0]
                            result = to_uint8(
                                part.data, int(part.height), int(part.width), str(part.data_format)
                            )
                    except Exception:  # timeout or lost device
                        self._disconnect(*conn)
                        conn = None
                if result is None:
                    if (yield from outage.failed()):
                        return
                    continue
                at = self._now()
                yield from outage.recovered(at)
                yield at, result
        finally:
            if conn is not None:
                self._disconnect(*conn)

    def _gray(self, image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if self.color == "gray" and image.ndim == 3 else image

    def __iter__(self) -> Iterator[SourceEvent]:
        if self.frame_lines is not None:
            yield from self._line_scan()
            return
        for item in self._images():
            if isinstance(item, SourceGap):
                yield item
                continue
            at, image = item
            seq = self._last_seq = max(int(at.timestamp() * 1_000_000), self._last_seq + 1)
            if isinstance(image, str):
                yield FailedFrame(self.name, seq, at, image)
            else:
                yield Frame(self.name, seq, self._gray(image), at, line_id=self.line_id, coil=self.coil)

    def _line_scan(self) -> Iterator[SourceEvent]:
        def blocks() -> Iterator[LineBlock | SourceEvent]:
            line = 0
            for item in self._images():
                if isinstance(item, SourceGap):
                    yield item
                    continue
                at, image = item
                if isinstance(image, str):  # lines lost, with no encoder count to show it
                    yield SourceGap(self.name, at, at, f"unusable buffer: {image}")
                    continue
                image = self._gray(image)
                yield LineBlock(image, line, at)
                line += len(image)

        assert self.frame_lines is not None
        yield from LineScanSource(
            blocks(),
            name=self.name,
            frame_lines=self.frame_lines,
            overlap_lines=self.overlap_lines,
            line_id=self.line_id,
            coil=self.coil,
            stop=self._stop,
            now=self._now,
        )
