"""``folder:PATH``: image files in a folder, in name order, each processed once, even across restarts.

Sequence numbers. A file's ``seq`` is :func:`folder_seq` of its path relative to the folder: a 63-bit
BLAKE2b hash of the name. An ordinal (position in name order) would be simpler but is not stable:
a file added with an earlier name, or one deleted, renumbers every file after it, so a restarted
daemon could not tell what it already stored. The hash depends on the name alone, so
``(source name, seq)`` is the frame's idempotent database key, and the daemon passes the seqs it
already has (``skip=``, a set or a predicate) to resume where it stopped. Two names colliding has
probability ~N^2 / 2^64 (1e-8 for ten million files); content is not hashed, so a file replaced
under the same name is not processed again.

Once vs follow. ``follow=False`` (``--once``) emits every file present and stops. ``follow=True``
polls every ``poll_s`` seconds; a new file is taken only once its size and modification time are
unchanged between two scans, so a file still being written (copied over the network, saved by a
camera) is not read half-finished. Hidden files (``.name``) are ignored, so writers that write
``.x.jpg`` then rename it are also safe.

Settling and retries. A camera may pause longer than a poll between chunks, or create the file empty
and fill it later, so two equal scans do not prove a file complete. With ``settle_s`` a file is taken
only once it has not been modified for that long, and a file that reads as empty, truncated or
undecodable is tried again (``decode_attempts`` in all, each after it settles again) before it is
stored as failed, with the number of attempts in the reason.

Decompression bombs. The image header is read (Pillow parses headers without decoding pixels) and a
frame over ``max_pixels`` is failed with its size before any pixel buffer is allocated: a 20000x20000
PNG is 390 KB on disk and 400 MB (gray) to 1.2 GB (colour) decoded.

Bad files become :class:`~inspection.messages.FailedFrame`: empty, unreadable, truncated (a JPEG
without its end-of-image marker, a PNG without ``IEND``: OpenCV would decode these into a grey
smear with only a warning), undecodable, or not ``expected_hw``.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from datasets.images import IMAGE_EXTENSIONS
from inspection.constants import FOLDER_POLL_S, SEQ_BITS
from inspection.messages import FailedFrame, Frame, SourceEvent, Surface
from inspection.sources.base import BaseSource, SkipSpec, as_skip

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def folder_seq(relative_name: str) -> int:
    """Stable sequence number of a file: 63-bit BLAKE2b of its POSIX path relative to the folder."""
    digest = hashlib.blake2b(relative_name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEQ_BITS)


def header_pixels(raw: bytes) -> tuple[int, str] | None:
    """Pixels per channel from the image header, without decoding, and how to name them
    (``"20000x20000 px"``); ``None`` when Pillow does not know the format (OpenCV then decodes it under
    its own limit, ``CV_IO_MAX_IMAGE_PIXELS``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                width, height = image.size
                return width * height, f"{width}x{height} px"
    except Image.DecompressionBombError as exc:  # over Pillow's own limit (~179 M): it names the count only
        counts = [int(token) for token in str(exc).replace("(", " ").split() if token.isdigit()]
        pixels = counts[0] if counts else 2**62
        return pixels, f"{pixels} px"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def truncation_reason(data: np.ndarray) -> str | None:
    """Why the bytes of an image file are empty or visibly truncated, or ``None``.

    JPEG: the end-of-image marker must be among the last 32 bytes (after any padding). ``FF D9``
    cannot occur inside entropy-coded data, where ``FF`` is always stuffed, so this is exact for
    baseline and progressive JPEGs. PNG: the file must end with the ``IEND`` chunk.
    """
    if data.size == 0:
        return "empty file"
    raw = data.tobytes()
    if raw.startswith(_JPEG_SOI) and _JPEG_EOI not in raw.rstrip(b"\x00")[-32:]:
        return "truncated JPEG (no end-of-image marker)"
    if raw.startswith(_PNG_SIGNATURE) and b"IEND" not in raw[-12:]:
        return "truncated PNG (no IEND chunk)"
    return None


SURFACE_FOLDERS: dict[str, Surface] = {"top": "top", "bottom": "bottom"}


def surface_of(root: Path, rel: str) -> Surface | None:
    """The strip surface a file shows, from folder names: the nearest folder named ``top`` or ``bottom``
    (any case) among the file's sub-folders of ``root``, else ``root`` itself (``folder:/cams/top``); None
    when no folder says. Cameras of both surfaces can so share one drop folder (``top/``, ``bottom/``)."""
    for part in [*reversed(Path(rel).parent.parts), root.name]:
        surface = SURFACE_FOLDERS.get(part.lower())
        if surface is not None:
            return surface
    return None


class FolderSource(BaseSource):
    """Image files of a folder as frames.

    Args:
        path: the folder.
        name: source name; default ``folder:<absolute path>`` (stable however the path was given).
        skip: seqs already processed: a container, or a predicate ``skip(seq) -> bool`` (e.g. a
            database lookup). Skipped files are not read.
        follow: keep polling for new files (``True``) or stop when all present files are done.
        poll_s: seconds between scans when following.
        recursive: include sub-folders (names relative to ``path``, ``/``-separated).
        color: ``"gray"`` gives ``(H, W)`` frames, ``"bgr"`` ``(H, W, 3)``.
        expected_hw: when given, images of another size become failed frames.
        settle_s: take a file only once it has not been modified for this long; also the wait
            before a failed read is tried again.
        decode_attempts: reads of an empty, truncated or undecodable file before it is failed.
        max_pixels: frames with more pixels (from the header) are failed without being decoded.
        line_id, coil: copied into every frame.
        stop, wait, now: see :class:`~inspection.sources.BaseSource`.

    Frames carry ``meta = {"path": absolute path, "name": relative name}``, ``captured_at`` = the
    file's modification time, and the strip surface when the folders say (:func:`surface_of`).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        skip: SkipSpec = None,
        follow: bool = False,
        poll_s: float = FOLDER_POLL_S,
        recursive: bool = False,
        color: Literal["gray", "bgr"] = "gray",
        expected_hw: tuple[int, int] | None = None,
        settle_s: float = 0.0,
        decode_attempts: int = 1,
        max_pixels: int | None = None,
        line_id: str = "",
        coil: str | None = None,
        stop: threading.Event | None = None,
        wait: Callable[[float], bool] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.root = Path(path).expanduser().resolve()
        super().__init__(name or f"folder:{self.root}", stop=stop, wait=wait, now=now)
        if color not in ("gray", "bgr"):
            raise ValueError(f"color must be 'gray' or 'bgr', got {color!r}")
        self._skip = as_skip(skip)
        self.follow = follow
        self.poll_s = poll_s
        self.recursive = recursive
        self._flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
        self.expected_hw = tuple(expected_hw) if expected_hw is not None else None
        if settle_s < 0 or decode_attempts < 1 or (max_pixels is not None and max_pixels < 1):
            raise ValueError("settle_s must be >= 0, decode_attempts >= 1 and max_pixels >= 1")
        self.settle_s = settle_s
        self.decode_attempts = decode_attempts
        self.max_pixels = max_pixels
        self.line_id = line_id
        self.coil = coil

    def scan(self) -> list[tuple[str, int, int]]:
        """``(relative name, size, mtime_ns)`` of the image files now present, sorted by name."""
        found: list[tuple[str, int, int]] = []
        if not self.root.is_dir():
            return found
        walker = os.walk(self.root) if self.recursive else [(str(self.root), [], None)]
        for folder, dirs, _ in walker:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:  # vanished between listing and stat
                    continue
                rel = Path(entry.path).relative_to(self.root).as_posix()
                found.append((rel, st.st_size, st.st_mtime_ns))
        found.sort()
        return found

    def __iter__(self) -> Iterator[SourceEvent]:
        done: set[str] = set()  # taken or skipped in this run
        last_seen: dict[str, tuple[int, int]] = {}  # follow mode: (size, mtime) at the previous scan
        while not self.stopped:
            waiting = False
            for rel, size, mtime_ns in self.scan():
                if rel in done:
                    continue
                seq = folder_seq(rel)
                if self._skip(seq):
                    done.add(rel)
                    continue
                if not self._ready(rel, (size, mtime_ns), last_seen):
                    waiting = True
                    continue
                event = self._read_with_retries(rel, seq)
                if event is None:  # stopped while waiting for the file
                    return
                done.add(rel)
                last_seen.pop(rel, None)
                yield event
                if self.stopped:
                    return
            if not (self.follow or waiting) or self._wait(self._next_scan_s(waiting)):
                return

    def _next_scan_s(self, waiting: bool) -> float:
        if self.follow or not waiting:
            return self.poll_s
        return min(self.poll_s, max(0.05, self.settle_s / 4))

    def _ready(self, rel: str, stat: tuple[int, int], last_seen: dict[str, tuple[int, int]]) -> bool:
        """Whether a file may be read now: unchanged since the last scan (follow) and not modified for
        ``settle_s``."""
        if self.follow and last_seen.get(rel) != stat:
            last_seen[rel] = stat  # new or still growing: look again next scan
            return False
        return self.settle_s <= 0 or time.time() - stat[1] / 1e9 >= self.settle_s

    def _read_with_retries(self, rel: str, seq: int) -> Frame | FailedFrame | None:
        """Read a file; an empty, truncated or undecodable one is read again (in place, so frames keep
        their name order) once it has settled again, ``decode_attempts`` in all. None when stopped."""
        attempts = 1
        event, retryable = self._read(rel, seq)
        while isinstance(event, FailedFrame) and retryable and attempts < self.decode_attempts:
            if self._wait_settled(rel):
                return None
            event, retryable = self._read(rel, seq)
            attempts += 1
        if isinstance(event, FailedFrame) and attempts > 1:
            event = replace(event, reason=f"{event.reason} (after {attempts} attempts)")
        return event

    def _wait_settled(self, rel: str) -> bool:
        """Wait ``settle_s`` (at least one poll step), then until the file is unmodified for ``settle_s``
        (a camera still writing it); True when the source was stopped meanwhile."""
        step = max(0.05, self.settle_s / 4)
        waited = 0.0
        while True:
            if self._wait(step):
                return True
            waited += step
            try:
                age = time.time() - (self.root / rel).stat().st_mtime
            except OSError:  # gone: the next read says so
                return False
            if waited >= self.settle_s and age >= self.settle_s:
                return False

    def load(self, rel: str, seq: int | None = None) -> Frame | FailedFrame:
        """Read one file (relative name) into a frame, or a failed frame saying why not."""
        return self._read(rel, folder_seq(rel) if seq is None else seq)[0]

    def _read(self, rel: str, seq: int) -> tuple[Frame | FailedFrame, bool]:
        """The frame (or failed frame) and whether a failure may be a file still being written."""
        path = self.root / rel
        meta = {"path": str(path), "name": rel}
        try:
            captured_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            reason = f"cannot read file: {exc.strerror or exc}"
            return FailedFrame(self.name, seq, self._now(), reason, meta), True
        truncated = truncation_reason(data)
        if truncated is not None:
            return FailedFrame(self.name, seq, captured_at, truncated, meta), True
        too_big = self._too_many_pixels(data)
        if too_big is not None:
            return FailedFrame(self.name, seq, captured_at, too_big, meta), False
        image = cv2.imdecode(data, self._flag)
        if image is None or image.size == 0:
            reason = "cannot decode image (corrupt or unsupported)"
            return FailedFrame(self.name, seq, captured_at, reason, meta), True
        if self.expected_hw is not None and image.shape[:2] != self.expected_hw:
            h, w = image.shape[:2]
            eh, ew = self.expected_hw
            reason = f"wrong size: {h}x{w} px, expected {eh}x{ew}"
            return FailedFrame(self.name, seq, captured_at, reason, meta), False
        surface = surface_of(self.root, rel)
        frame = Frame(
            self.name,
            seq,
            image,
            captured_at,
            line_id=self.line_id,
            coil=self.coil,
            meta=meta,
            surface=surface,
        )
        return frame, False

    def _too_many_pixels(self, data: np.ndarray) -> str | None:
        if self.max_pixels is None:
            return None
        header = header_pixels(data.tobytes())
        if header is None or header[0] <= self.max_pixels:
            return None
        return f"too many pixels: {header[1]} in the header, limit {self.max_pixels} (not decoded)"
