"""``video:PATH_OR_URL`` and ``camera:INDEX``: OpenCV ``VideoCapture`` with reconnect and backoff.

Files are finite: the first failed read is the end of the video. Live inputs (a camera index, or a
URL such as ``rtsp://``) are not: a failed open or read is an outage. The source then releases the
capture and reopens it, waiting ``initial_backoff_s * backoff_factor ** (k - 1)`` (at most
``max_backoff_s``) after the k-th consecutive failure. When frames flow again it yields a
:class:`~inspection.messages.SourceGap` from the first failure to the first new frame; after
``max_attempts`` consecutive failures it yields a final gap and raises
:class:`~inspection.sources.SourceError`. A file that cannot be opened is retried the same way
(it may still be being copied).

Sequence numbers: ``seq_mode="index"`` (files' default) numbers frames 0, 1, 2... in the file, so a
restarted daemon can skip the frames it stored (``skip=``; skipped frames are grabbed, not decoded).
``"time"`` (live default) uses the capture time in microseconds since the epoch, forced strictly
increasing: a live stream has no position to resume from and its counter restarts with each
connection, while times never repeat.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from inspection.constants import (
    RECONNECT_BACKOFF_FACTOR,
    RECONNECT_INITIAL_BACKOFF_S,
    RECONNECT_MAX_ATTEMPTS,
    RECONNECT_MAX_BACKOFF_S,
)
from inspection.messages import FailedFrame, Frame, SourceEvent
from inspection.sources.base import BaseSource, Outage, SkipSpec, as_skip


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the source uses (tests inject fakes)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def grab(self) -> bool: ...

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


def is_live_target(target: str | int) -> bool:
    """Camera indices and URLs (``scheme://``) are live streams; anything else is a file."""
    return isinstance(target, int) or "://" in target


class VideoSource(BaseSource):
    """Frames of a video file, stream URL or camera.

    Args:
        target: a file path, a URL (``rtsp://...``) or a camera index.
        name: source name; default ``video:<target>`` / ``camera:<index>``.
        live: treat read failures as disconnects (default: :func:`is_live_target`).
        capture_factory: ``factory(target) -> Capture``; default ``cv2.VideoCapture``.
        color: ``"gray"`` gives ``(H, W)`` frames, ``"bgr"`` ``(H, W, 3)``.
        seq_mode: ``"index"`` or ``"time"`` (see the module docstring); default by ``live``.
        skip: seqs already processed (container or predicate); index mode only: those frames are
            grabbed, not decoded, and not emitted.
        max_attempts: consecutive failed opens/reads before giving up; ``None`` retries forever.
        initial_backoff_s, max_backoff_s, backoff_factor: the exponential backoff.
        line_id, coil: copied into every frame.
        stop, wait, now: see :class:`~inspection.sources.BaseSource`.
    """

    def __init__(
        self,
        target: str | int,
        *,
        name: str | None = None,
        live: bool | None = None,
        capture_factory: Callable[[str | int], Capture] | None = None,
        color: Literal["gray", "bgr"] = "gray",
        seq_mode: Literal["index", "time"] | None = None,
        skip: SkipSpec = None,
        max_attempts: int | None = RECONNECT_MAX_ATTEMPTS,
        initial_backoff_s: float = RECONNECT_INITIAL_BACKOFF_S,
        max_backoff_s: float = RECONNECT_MAX_BACKOFF_S,
        backoff_factor: float = RECONNECT_BACKOFF_FACTOR,
        line_id: str = "",
        coil: str | None = None,
        stop: threading.Event | None = None,
        wait: Callable[[float], bool] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        default_name = f"camera:{target}" if isinstance(target, int) else f"video:{target}"
        super().__init__(name or default_name, stop=stop, wait=wait, now=now)
        if color not in ("gray", "bgr"):
            raise ValueError(f"color must be 'gray' or 'bgr', got {color!r}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or None, got {max_attempts}")
        self.target = target
        self.live = is_live_target(target) if live is None else live
        self._factory = capture_factory or cv2.VideoCapture
        self.color = color
        self.seq_mode = seq_mode or ("time" if self.live else "index")
        if self.seq_mode not in ("index", "time"):
            raise ValueError(f"seq_mode must be 'index' or 'time', got {seq_mode!r}")
        self._skip = as_skip(skip)
        self.max_attempts = max_attempts
        self._backoff = {"initial_s": initial_backoff_s, "max_s": max_backoff_s, "factor": backoff_factor}
        self.line_id = line_id
        self.coil = coil
        self._last_time_seq = -1

    def _open(self) -> Capture | None:
        try:
            cap = self._factory(self.target)
        except Exception:  # a backend that raises instead of returning a closed capture
            return None
        if cap is not None and cap.isOpened():
            return cap
        if cap is not None:
            cap.release()
        return None

    def _time_seq(self, at: datetime) -> int:
        seq = max(int(at.timestamp() * 1_000_000), self._last_time_seq + 1)
        self._last_time_seq = seq
        return seq

    def __iter__(self) -> Iterator[SourceEvent]:
        cap: Capture | None = None
        outage = Outage(
            self, what=f"read {self.target}", max_attempts=self.max_attempts, backoff=self._backoff
        )
        index = 0  # next frame's position in the stream (files: the frame number)
        try:
            while not self.stopped:
                if cap is None:
                    cap = self._open()
                ok, image = (False, None)
                if cap is not None:
                    if self.seq_mode == "index" and self._skip(index):
                        if cap.grab():
                            index += 1
                            continue
                    else:
                        ok, image = cap.read()
                if not ok:
                    if cap is not None and not self.live:
                        return  # end of the file
                    if cap is not None:
                        cap.release()
                        cap = None
                    if (yield from outage.failed()):
                        return
                    continue
                assert cap is not None, "a frame was read, so the capture is open"
                captured_at = self._now()
                yield from outage.recovered(captured_at, "reconnected" if index else "opened")
                seq = index if self.seq_mode == "index" else self._time_seq(captured_at)
                yield self._to_frame(image, seq, captured_at, index, cap)
                index += 1
        finally:
            if cap is not None:
                cap.release()

    def _to_frame(
        self, image: np.ndarray | None, seq: int, captured_at: datetime, index: int, cap: Capture
    ) -> Frame | FailedFrame:
        meta: dict[str, Any] = {"frame_index": index}
        if not self.live:
            meta["pos_ms"] = float(cap.get(cv2.CAP_PROP_POS_MSEC))
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
            got = f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}"
            reason = f"decoder returned {got}"
            return FailedFrame(self.name, seq, captured_at, reason, meta)
        if image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if self.color == "gray" and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif self.color == "bgr" and image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return Frame(self.name, seq, image, captured_at, line_id=self.line_id, coil=self.coil, meta=meta)
