"""Where the daemon puts files for the dashboard and retraining. Light (no OpenCV, no torch), so the
dashboard and the retraining job compute the same paths without importing the daemon's stages."""

from __future__ import annotations

from pathlib import Path


def safe_name(text: str) -> str:
    """A file-name-safe form of a source, line or track name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:80]


def raw_frame_path(output_dir: str | Path, source: str, seq: int) -> Path:
    """The lossless raw pixels of a stored frame (retraining cuts its windows from them)."""
    return Path(output_dir) / "raw" / safe_name(source) / f"{seq}.png"


def live_frame_path(output_dir: str | Path, line: str) -> Path:
    """The annotated latest frame of a production line (the dashboard's Live page)."""
    return Path(output_dir) / "live" / f"{safe_name(line)}.jpg"
