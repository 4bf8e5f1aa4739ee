"""The back half's message types now live in :mod:`inspection.messages` (one module for every message
between stages); this module re-exports them for code that still imports them from here."""

from inspection.messages import FrameResult, TileDetections, TrackedDefect

__all__ = ["FrameResult", "TileDetections", "TrackedDefect"]
