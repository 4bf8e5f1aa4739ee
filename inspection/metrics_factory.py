"""Metrics and the health endpoint for a daemon config (kept apart so tests can run without them)."""

from __future__ import annotations

from typing import Any

from inspection.config import InspectionConfig


def make_metrics(cfg: InspectionConfig) -> tuple[Any, Any]:
    return None, None
