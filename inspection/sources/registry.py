"""``open_source``: the source a URI names (the scheme table is in the package docstring)."""

from __future__ import annotations

from typing import Any

from inspection.sources.base import Source, split_uri
from inspection.sources.folder import FolderSource
from inspection.sources.genicam import GenICamSource  # harvesters itself is imported when a camera opens
from inspection.sources.strip_sim import StripSimulator
from inspection.sources.video import VideoSource


def open_source(uri: str, **options: Any) -> Source:
    """Build the source a URI names.

    Args:
        uri: ``folder:PATH``, ``video:PATH_OR_URL``, ``camera:INDEX``, ``strip-sim:SPEC`` or
            ``genicam:CTI_FILE`` (see the module docstring).
        **options: passed to the source's constructor (e.g. ``follow``, ``skip``, ``stop``,
            ``max_attempts``, ``images``); each source documents its own.

    Raises:
        ValueError: an unknown scheme or a malformed URI.
        MissingExtraError: ``genicam:`` without the ``harvesters`` package.
    """
    scheme, rest = split_uri(uri)
    if not rest and scheme != "strip-sim":
        raise ValueError(f"source {uri!r}: nothing after {scheme + ':'!r}")
    if scheme == "folder":
        return FolderSource(rest, **options)
    if scheme in ("video", "camera"):
        if scheme == "camera":
            try:
                index = int(rest)
            except ValueError:
                raise ValueError(f"source {uri!r}: camera index must be an integer") from None
            options.setdefault("name", f"camera:{index}")
            return VideoSource(index, **options)
        options.setdefault("name", uri)
        return VideoSource(rest, **options)
    if scheme == "strip-sim":
        options.setdefault("name", uri)
        return StripSimulator.from_spec(rest, **options)
    options.setdefault("name", uri)
    return GenICamSource(rest, **options)
