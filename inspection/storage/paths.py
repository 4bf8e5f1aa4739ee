"""Where the daemon puts files for the dashboard and retraining. Light (no OpenCV, no torch), so the
dashboard and the retraining job compute the same paths without importing the daemon's stages."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

# Raw frames are noise-like steel texture that PNG shrinks by only ~25 % at ~70x the CPU of an uncompressed
# TIFF (4.2 vs 0.06 ms for 800x600), so TIFF is the default; PNG is read back from older output folders.
RAW_FORMATS = ("tiff", "png")
CROP_PAD_PX = 8  # a defect crop is its box widened by this margin, clipped to the frame


def crop_window(xyxy: Sequence[float], frame_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The defect crop's window ``(xa, ya, xb, yb)`` in frame pixels (box plus the margin), or None.

    Here, not in the evidence writer, so the dashboard cuts the same window from a frame image when a
    crop file is missing (deleted by a clean-up job, or never written: ``output.save_crops: false``)."""
    h, w = frame_hw
    x1, y1, x2, y2 = xyxy
    xa, ya = int(max(0, x1 - CROP_PAD_PX)), int(max(0, y1 - CROP_PAD_PX))
    xb, yb = int(min(w, x2 + CROP_PAD_PX)), int(min(h, y2 + CROP_PAD_PX))
    return None if xb <= xa or yb <= ya else (xa, ya, xb, yb)


def safe_name(text: str) -> str:
    """A file-name-safe form of a source, line or track name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:80]


@functools.lru_cache(maxsize=1024)  # called for every crop of every frame with a handful of sources
def source_dir_name(source: str) -> str:
    """The folder of one source's evidence: a readable prefix plus a hash of the whole name.

    ``safe_name`` alone is not unique (it truncates at 80 characters and maps ``/`` and ``:`` to ``_``),
    so two folder sources sharing a long prefix would overwrite each other's crops and frames; the hash
    makes the name unique per source, and ``seq`` makes the file unique within it.
    """
    digest = hashlib.blake2b(source.encode("utf-8"), digest_size=6).hexdigest()
    return f"{safe_name(source)[:60]}-{digest}"


def crop_path(output_dir: str | Path, source: str, seq: int, track_id: str, fmt: str = "jpg") -> Path:
    """The crop of one defect (``track_id``) as first stored with frame ``(source, seq)``: a picture for
    people (``fmt`` jpg by default); retraining cuts its windows from the raw frame, never from crops."""
    return Path(output_dir) / "crops" / source_dir_name(source) / f"{seq}_{safe_name(track_id)}.{fmt}"


def frame_image_path(output_dir: str | Path, source: str, seq: int) -> Path:
    """The annotated copy of a stored frame."""
    return Path(output_dir) / "frames" / source_dir_name(source) / f"{seq}.jpg"


def raw_frame_path(output_dir: str | Path, source: str, seq: int, fmt: str = "tiff") -> Path:
    """Where the lossless raw pixels of a stored frame are written (retraining cuts its windows from them)."""
    return Path(output_dir) / "raw" / source_dir_name(source) / f"{seq}.{fmt}"


def stored_raw_frame(output_dir: str | Path, source: str, seq: int) -> Path | None:
    """The raw pixels of ``(source, seq)`` on disk in any of :data:`RAW_FORMATS`, or None."""
    for fmt in RAW_FORMATS:
        path = raw_frame_path(output_dir, source, seq, fmt)
        if path.is_file():
            return path
    return None


def live_frame_path(output_dir: str | Path, line: str) -> Path:
    """The annotated latest frame of a production line (the dashboard's Live page)."""
    return Path(output_dir) / "live" / f"{safe_name(line)}.jpg"
