"""Media paths read from database rows, confined to the media root before any file is opened.

A ``crop_path`` or ``image_path`` is data, not a trusted path: whoever can write a row (a daemon on
another host, a restored backup, an SQL injection elsewhere) could otherwise make the dashboard read
and show ``/etc/shadow``-like files or ``../../`` anything. A stored path is used only when it names
a file that, with every symlink resolved, lies inside one of the roots:

- ``media_root`` (and ``live_dir``) when configured: only these;
- otherwise the defaults that find a local daemon's files: the SQLite database's folder, the current
  directory and the repository, never a whole file system (``/``).

Relative paths with a ``..`` part are refused outright; absolute paths are accepted only inside a root
(the daemon stores absolute paths when its ``output.dir`` is absolute); ``~`` is not expanded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets.settings import REPO_ROOT


def media_roots(*, media_root: str | None, live_dir: str | None, db_folder: Path | None) -> list[Path]:
    """The folders stored media paths may point into, in the order relative paths are tried."""
    if media_root:
        roots = [Path(media_root).expanduser()]  # the admin's config, not a row: ~ is fine here
        if live_dir:
            roots.append(Path(live_dir).expanduser())
    else:
        roots = [Path(live_dir).expanduser()] if live_dir else []
        roots += [p for p in (db_folder, Path.cwd(), REPO_ROOT) if p is not None]
    out: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved != Path(resolved.anchor) and resolved not in out:
            out.append(resolved)
    return out


def confined_media_path(stored: str | None, roots: Sequence[Path]) -> Path | None:
    """The file a stored path names when it lies inside one of ``roots`` (resolved), else None.

    None also when the path is empty, holds a NUL or ``..``, or names no regular file, and when it is
    no string at all: pandas gives a NULL ``crop_path`` (a daemon with ``save_crops: false``) as NaN.
    """
    if not isinstance(stored, str) or not stored or "\0" in stored:
        return None
    path = Path(stored)
    if ".." in path.parts:
        return None
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):  # a symlink loop, a name too long
            continue
        if any(resolved.is_relative_to(root) for root in roots) and resolved.is_file():
            return resolved
    return None
