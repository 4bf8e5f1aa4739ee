"""The daemon's HTTP endpoint for monitoring: ``/metrics`` for Prometheus, ``/health`` for probes.

Standard library ``ThreadingHTTPServer`` in a daemon thread, so a slow scrape never holds up the line and
no web framework is needed. The server knows nothing about the pipeline: the daemon passes a callable
that returns the health dict (build it with :func:`health_report`), and the server maps its ``status`` to
the HTTP code: ``ok`` -> 200, ``degraded`` / ``stopping`` -> 503 (a load balancer or Kubernetes probe then
stops sending work / restarts the pod), anything else or a crashing callable -> 500.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeAlias

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("steel.health")

HealthStatus: TypeAlias = Literal["ok", "degraded", "stopping"]
STATUS_CODES: dict[str, int] = {"ok": 200, "degraded": 503, "stopping": 503}
HealthFn: TypeAlias = Callable[[], Mapping[str, Any]]


def _age(value: float | None) -> float | None:
    """Seconds rounded for humans; ``None`` for unknown or never (JSON has no infinity)."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 3)


def health_report(
    *,
    stopping: bool,
    heartbeat_ages_s: Mapping[str, float],
    budgets_s: float | Mapping[str, float],
    last_frame_age_s: float | None = None,
    queue_depths: Mapping[str, int] | None = None,
    db_degraded: bool = False,
    storage_full: bool = False,
    model_version: str | None = None,
) -> dict[str, Any]:
    """The ``/health`` body: ``degraded`` when a stage's heartbeat is older than its budget.

    Args:
        stopping: the daemon is draining after SIGTERM/SIGINT.
        heartbeat_ages_s: seconds since each stage last beat (``inf`` when it never did).
        budgets_s: the budget of every stage, or per stage (a stage missing from the mapping has no
            budget and is never stale).
        last_frame_age_s: seconds since the last frame finished; ``None`` before the first.
        queue_depths: messages waiting per queue.
        db_degraded: results go to the local spool because the database is away. Reported, but not
            unhealthy by itself: nothing is lost and restarting would not bring the database back.
        storage_full: the database and the spool both refuse records (a full disk): results wait in
            memory and the line stops when that fills. Unhealthy: someone must free space.
        model_version: the bundle in use.

    Returns:
        ``{"status", "stale_stages", "last_frame_age_s", "heartbeat_ages_s", "queue_depths",
        "db_degraded", "storage_full", "model_version"}``; ages in seconds, ``None`` where unknown.
    """

    def budget(stage: str) -> float:
        if isinstance(budgets_s, Mapping):
            return float(budgets_s.get(stage, math.inf))
        return float(budgets_s)

    stale = sorted(stage for stage, age in heartbeat_ages_s.items() if age > budget(stage))
    status: HealthStatus = "stopping" if stopping else ("degraded" if stale or storage_full else "ok")
    return {
        "status": status,
        "stale_stages": stale,
        "last_frame_age_s": _age(last_frame_age_s),
        "heartbeat_ages_s": {stage: _age(age) for stage, age in sorted(heartbeat_ages_s.items())},
        "queue_depths": dict(sorted((queue_depths or {}).items())),
        "db_degraded": bool(db_degraded),
        "storage_full": bool(storage_full),
        "model_version": model_version,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client connection never blocks stop()
    health_fn: HealthFn
    registry: CollectorRegistry


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "steel-health"

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, payload: Mapping[str, Any]) -> None:
        body = json.dumps(_json_safe(payload), default=str, sort_keys=True).encode("utf-8")
        self._send(code, body, "application/json")

    def _health(self) -> None:
        try:
            payload = dict(self.server.health_fn())
        except Exception as exc:  # the probe must answer even when the daemon's state is broken
            log.exception("health callable failed")
            self._json(500, {"status": "error", "error": f"{type(exc).__name__}: {exc}"})
            return
        code = STATUS_CODES.get(str(payload.get("status")))
        if code is None:
            payload = {**payload, "error": f"unknown status {payload.get('status')!r}"}
            code = 500
        self._json(code, payload)

    def do_GET(self) -> None:  # the name http.server dispatches to
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/health":
            self._health()
        else:
            self._json(404, {"error": f"no such path {path!r}; try /health or /metrics"})

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # the base class names it so
        log.debug("%s %s", self.address_string(), format % args)


class HealthServer:
    """Serves ``/metrics`` and ``/health`` on ``host:port`` (port 0 picks a free one; see :attr:`port`).

    Args:
        health: returns the health dict (see :func:`health_report`); called per request, from the
            server's threads, so it must only read the daemon's state.
        registry: the metrics registry to expose (``DaemonMetrics.registry``).
        host: interface to bind; keep the loopback default unless a scraper on another host needs it.
        port: TCP port; 0 for any free port.
    """

    def __init__(
        self, *, health: HealthFn, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._health = health
        self._registry = registry
        self._host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (valid after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("HealthServer is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._host if self._host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        """Bind and serve in a daemon thread.

        Raises:
            OSError: the address is in use or cannot be bound (fail at start, not at the first probe).
        """
        if self._server is not None:
            raise RuntimeError("HealthServer is already started")
        server = _Server((self._host, self._requested_port), _Handler)
        server.health_fn = self._health
        server.registry = self._registry
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="health-http", daemon=True
        )
        self._thread.start()
        log.info("health endpoint on %s (/health, /metrics)", self.url)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and release the port; idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout_s)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
