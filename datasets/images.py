"""Finding and inspecting the image files that annotations point at.

Annotation files name their images (``asset.name``, ``<filename>``, a CSV cell, a COCO ``file_name``);
a name is only ever looked up *inside* the folders we were given, never followed outside them, so a
hostile file cannot make us read ``../../etc/passwd``. Sizes come from the image header alone (PIL
opens lazily), so checking 1,440 images costs a file read and a hash each, not a decode.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from datasets.problems import ProblemLog

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif")
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnreadableImageError(OSError):
    """An image file exists but its header cannot be decoded."""


def unsafe_name_reason(name: str) -> str | None:
    """Why ``name`` may not be used as a path relative to an image folder, or ``None`` if it is safe."""
    if not name or not name.strip():
        return "empty image name"
    if "\x00" in name:
        return "image name contains a NUL character"
    if _DRIVE.match(name):
        return "image name has a drive letter (absolute path)"
    if name.startswith(("/", "\\")):
        return "image name is an absolute path"
    parts = name.replace("\\", "/").split("/")
    if any(part == ".." for part in parts):
        return "image name escapes its folder ('..')"
    return None


def resolve_image(
    name: str,
    search_dirs: Iterable[Path | str | None],
    log: ProblemLog,
    file: str,
    item: str,
    *,
    field: str = "name",
    report_missing: bool = True,
) -> Path | None:
    """The first ``dir / name`` that is a file, or ``None`` with an error in ``log``.

    Names that could escape the search folders (``..``, absolute paths, drive letters) are rejected
    with an error before any file system access. ``None`` entries in ``search_dirs`` are skipped.
    """
    reason = unsafe_name_reason(name)
    if reason is not None:
        log.error(file, item, field, f"{reason}: {name!r}")
        return None
    relative = PurePosixPath(name.replace("\\", "/"))
    dirs = [Path(d) for d in search_dirs if d is not None]
    for folder in dirs:
        candidate = folder.joinpath(*relative.parts)
        if _is_file(candidate):
            return candidate
    if report_missing:
        searched = ", ".join(str(d) for d in dict.fromkeys(dirs)) or "no folder given"
        log.error(file, item, field, f"image not found: {name!r} (searched {searched})")
    return None


def _is_file(path: Path) -> bool:
    """``path.is_file()`` that treats unusable names (too long, bad bytes) as absent instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def image_size(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding pixels.

    Raises:
        UnreadableImageError: the file cannot be opened or is not an image PIL understands.
    """
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(f"{path}: unreadable image: {exc}") from None


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of the file's bytes (identifies an image across renames and exports)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def inspect_image(path: Path | str) -> tuple[int, int, str]:
    """``(width, height, sha256)`` from one read of the file: the hash and the header share the bytes.

    Raises:
        UnreadableImageError: the file cannot be read or its header cannot be decoded.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableImageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(f"{path}: unreadable image: {exc}") from None
    return int(width), int(height), digest


def find_with_extension(stem: str, search_dirs: Iterable[Path | str | None]) -> str | None:
    """``stem + ext`` for the first image extension that exists in a search folder (case as listed)."""
    if unsafe_name_reason(stem) is not None:
        return None
    for folder in (Path(d) for d in search_dirs if d is not None):
        for ext in IMAGE_EXTENSIONS:
            for variant in (ext, ext.upper()):
                if _is_file(folder / (stem + variant)):
                    return stem + variant
    return None
