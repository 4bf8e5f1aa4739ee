"""Where the daemon puts files for the dashboard and retraining. Light (no OpenCV, no torch), so the
dashboard and the retraining job compute the same paths without importing the daemon's stages."""

from __future__ import annotations

import hashlib
from pathlib import Path


def safe_name(text: str) -> str:
    """A file-name-safe form of a source, line or track name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:80]


def source_dir_name(source: str) -> str:
    """The folder of one source's evidence: a readable prefix plus a hash of the whole name.

    ``safe_name`` alone is not unique (it truncates at 80 characters and maps ``/`` and ``:`` to ``_``),
    so two folder sources sharing a long prefix would overwrite each other's crops and frames; the hash
    makes the name unique per source, and ``seq`` makes the file unique within it.
    """
    digest = hashlib.blake2b(source.encode("utf-8"), digest_size=6).hexdigest()
    return f"{safe_name(source)[:60]}-{digest}"


def crop_path(output_dir: str | Path, source: str, seq: int, track_id: str) -> Path:
    """The crop of one defect (``track_id``) as first stored with frame ``(source, seq)``."""
    return Path(output_dir) / "crops" / source_dir_name(source) / f"{seq}_{safe_name(track_id)}.png"


def frame_image_path(output_dir: str | Path, source: str, seq: int) -> Path:
    """The annotated copy of a stored frame."""
    return Path(output_dir) / "frames" / source_dir_name(source) / f"{seq}.jpg"


def raw_frame_path(output_dir: str | Path, source: str, seq: int) -> Path:
    """The lossless raw pixels of a stored frame (retraining cuts its windows from them)."""
    return Path(output_dir) / "raw" / source_dir_name(source) / f"{seq}.png"


def live_frame_path(output_dir: str | Path, line: str) -> Path:
    """The annotated latest frame of a production line (the dashboard's Live page)."""
    return Path(output_dir) / "live" / f"{safe_name(line)}.jpg"
