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

Bad files become :class:`~inspection.messages.FailedFrame`: empty, unreadable, truncated (a JPEG
without its end-of-image marker, a PNG without ``IEND``: OpenCV would decode these into a grey
smear with only a warning), undecodable, or not ``expected_hw``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from datasets.images import IMAGE_EXTENSIONS
from inspection.constants import FOLDER_POLL_S, SEQ_BITS
from inspection.messages import FailedFrame, Frame, SourceEvent
from inspection.sources import BaseSource, SkipSpec, as_skip

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def folder_seq(relative_name: str) -> int:
    """Stable sequence number of a file: 63-bit BLAKE2b of its POSIX path relative to the folder."""
    digest = hashlib.blake2b(relative_name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEQ_BITS)


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
        line_id, coil: copied into every frame.
        stop, wait, now: see :class:`~inspection.sources.BaseSource`.

    Frames carry ``meta = {"path": absolute path, "name": relative name}`` and ``captured_at`` = the
    file's modification time.
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
            for rel, size, mtime_ns in self.scan():
                if rel in done:
                    continue
                seq = folder_seq(rel)
                if self._skip(seq):
                    done.add(rel)
                    continue
                if self.follow and last_seen.get(rel) != (size, mtime_ns):
                    last_seen[rel] = (size, mtime_ns)  # new or still growing: look again next scan
                    continue
                done.add(rel)
                last_seen.pop(rel, None)
                yield self.load(rel, seq)
                if self.stopped:
                    return
            if not self.follow or self._wait(self.poll_s):
                return

    def load(self, rel: str, seq: int | None = None) -> Frame | FailedFrame:
        """Read one file (relative name) into a frame, or a failed frame saying why not."""
        seq = folder_seq(rel) if seq is None else seq
        path = self.root / rel
        meta = {"path": str(path), "name": rel}
        try:
            captured_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            return FailedFrame(self.name, seq, self._now(), f"cannot read file: {exc.strerror or exc}", meta)
        reason = truncation_reason(data)
        if reason is not None:
            return FailedFrame(self.name, seq, captured_at, reason, meta)
        image = cv2.imdecode(data, self._flag)
        if image is None or image.size == 0:
            return FailedFrame(
                self.name, seq, captured_at, "cannot decode image (corrupt or unsupported)", meta
            )
        if self.expected_hw is not None and image.shape[:2] != self.expected_hw:
            h, w = image.shape[:2]
            eh, ew = self.expected_hw
            return FailedFrame(
                self.name, seq, captured_at, f"wrong size: {h}x{w} px, expected {eh}x{ew}", meta
            )
        return Frame(self.name, seq, image, captured_at, line_id=self.line_id, coil=self.coil, meta=meta)
