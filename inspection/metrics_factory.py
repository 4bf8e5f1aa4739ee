"""Metrics and the health endpoint for a daemon config (kept apart so tests can run without them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from inspection.config import InspectionConfig
from inspection.health import HealthServer
from inspection.metrics import DaemonMetrics


class DaemonHealthServer:
    """The HTTP server for ``/health`` and ``/metrics``, bound to a daemon once it exists."""

    def __init__(self, cfg: InspectionConfig, metrics: DaemonMetrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self._health: Callable[[], Mapping[str, Any]] | None = None
        self._server: HealthServer | None = None

    def attach(self, health: Callable[[], Mapping[str, Any]]) -> None:
        self._health = health

    def start(self) -> None:
        self._server = HealthServer(
            health=lambda: self._health() if self._health else {"status": "ok"},
            registry=self.metrics.registry,
            host=self.cfg.health.host,
            port=self.cfg.health.port,
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def make_metrics(cfg: InspectionConfig) -> tuple[DaemonMetrics, DaemonHealthServer | None]:
    metrics = DaemonMetrics()
    return metrics, DaemonHealthServer(cfg, metrics) if cfg.health.enabled else None
