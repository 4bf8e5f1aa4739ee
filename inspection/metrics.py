"""The daemon's Prometheus metrics, recorded where things happen (never parsed back from a stats dict).

Every :class:`DaemonMetrics` owns a :class:`~prometheus_client.CollectorRegistry`, so several daemons (or
tests) in one process never collide on the global registry. Names carry the ``steel_`` prefix and their
unit (``_seconds``, ``_total``).

=====================================  =========  ======================  ==================================
metric                                 type       labels                  recorded by
=====================================  =========  ======================  ==================================
steel_frames_total                     counter    source, status          :meth:`count_frame`,
                                                  (ok, failed, dropped)   :meth:`count_drop`
steel_dropped_frames_total             counter    queue                   :meth:`count_drop`
steel_defects_total                    counter    class_name              :meth:`count_defects`
steel_alarms_total                     counter    sink, verdict, status   :meth:`count_alarm`
steel_source_gaps_total                counter    source                  :meth:`count_source_gap`
steel_db_spooled_total                 counter    (none)                  :meth:`count_spooled`
steel_stage_latency_seconds            histogram  stage                   :meth:`observe_stage`,
                                                                          :meth:`observe_stage_seconds`
steel_queue_depth                      gauge      queue                   :meth:`set_queue_depth`
steel_db_degraded                      gauge      (none)                  :meth:`set_db_degraded`
steel_model_info                       gauge      version                 :meth:`set_model`
steel_last_frame_timestamp_seconds     gauge      (none)                  :meth:`mark_frame`
=====================================  =========  ======================  ==================================
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Literal, TypeAlias

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

FrameStatus: TypeAlias = Literal["ok", "failed", "dropped"]
AlarmStatus: TypeAlias = Literal["sent", "acked", "skipped", "failed"]

FRAME_STATUSES: tuple[FrameStatus, ...] = ("ok", "failed", "dropped")
ALARM_STATUSES: tuple[AlarmStatus, ...] = ("sent", "acked", "skipped", "failed")

# A stage takes from about a millisecond (queue hand-over, NMS) to seconds (a large frame on a CPU).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class DaemonMetrics:
    """The metrics of one daemon, in their own registry.

    Args:
        registry: where to register; a new :class:`CollectorRegistry` by default.
        namespace: metric name prefix.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, namespace: str = "steel") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._add_counters(self.registry, namespace)
        self._add_gauges(self.registry, namespace)
        self._model_version: str | None = None

    def _add_counters(self, r: CollectorRegistry, ns: str) -> None:
        """The ``_total`` counters and the stage latency histogram."""
        self.frames = Counter(
            "frames", "Frames by final status.", ["source", "status"], namespace=ns, registry=r
        )
        self.dropped_frames = Counter(
            "dropped_frames", "Frames shed by back-pressure, per queue.", ["queue"], namespace=ns, registry=r
        )
        self.defects = Counter(
            "defects", "Defects stored, per class.", ["class_name"], namespace=ns, registry=r
        )
        self.alarms = Counter(
            "alarms",
            "Frame results handed to outputs.",
            ["sink", "verdict", "status"],
            namespace=ns,
            registry=r,
        )
        self.source_gaps = Counter(
            "source_gaps",
            "Stretches without input (reconnects, encoder jumps).",
            ["source"],
            namespace=ns,
            registry=r,
        )
        self.db_spooled = Counter(
            "db_spooled",
            "Results written to the local spool while the database was away.",
            namespace=ns,
            registry=r,
        )
        self.stage_latency = Histogram(
            "stage_latency_seconds",
            "Time a stage spent on one message.",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            namespace=ns,
            registry=r,
        )

    def _add_gauges(self, r: CollectorRegistry, ns: str) -> None:
        """The gauges: queue depths, storage health, the model in use, the last frame's time."""
        self.queue_depth = Gauge(
            "queue_depth", "Messages waiting in a queue.", ["queue"], namespace=ns, registry=r
        )
        self.db_degraded = Gauge(
            "db_degraded",
            "1 while results go to the spool instead of the database.",
            namespace=ns,
            registry=r,
        )
        self.storage_full = Gauge(
            "storage_full",
            "1 while the database and the spool both refuse records (held in memory, then the line stops).",
            namespace=ns,
            registry=r,
        )
        self.model_info = Gauge(
            "model_info", "The model bundle in use (value 1).", ["version"], namespace=ns, registry=r
        )
        self.last_frame_timestamp = Gauge(
            "last_frame_timestamp_seconds", "Unix time of the last frame finished.", namespace=ns, registry=r
        )

    # --- counters ---------------------------------------------------------------------------------

    def count_frame(self, source: str, status: FrameStatus) -> None:
        """A frame reached its final status (a dropped frame: prefer :meth:`count_drop`)."""
        if status not in FRAME_STATUSES:
            raise ValueError(f"frame status {status!r} is not one of {FRAME_STATUSES}")
        self.frames.labels(source=source, status=status).inc()

    def count_drop(self, queue: str, *, source: str) -> None:
        """Back-pressure shed a frame of ``source`` from ``queue``: counted per queue and as dropped."""
        self.dropped_frames.labels(queue=queue).inc()
        self.frames.labels(source=source, status="dropped").inc()

    def count_defects(self, class_names: Iterable[str]) -> None:
        """Defects stored (one name per defect; a frame with no defect counts nothing)."""
        for name in class_names:
            self.defects.labels(class_name=name).inc()

    def count_alarm(self, sink: str, verdict: str, status: AlarmStatus) -> None:
        if status not in ALARM_STATUSES:
            raise ValueError(f"alarm status {status!r} is not one of {ALARM_STATUSES}")
        self.alarms.labels(sink=sink, verdict=verdict, status=status).inc()

    def count_source_gap(self, source: str) -> None:
        self.source_gaps.labels(source=source).inc()

    def count_spooled(self, n: int = 1) -> None:
        self.db_spooled.inc(n)

    # --- latency ----------------------------------------------------------------------------------

    def observe_stage_seconds(self, stage: str, seconds: float) -> None:
        self.stage_latency.labels(stage=stage).observe(seconds)

    @contextmanager
    def observe_stage(self, stage: str) -> Iterator[None]:
        """Time the ``with`` body as one message of ``stage`` (recorded even when the body raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage_seconds(stage, time.perf_counter() - started)

    # --- gauges -----------------------------------------------------------------------------------

    def set_queue_depth(self, queue: str, depth: int) -> None:
        self.queue_depth.labels(queue=queue).set(depth)

    def set_db_degraded(self, degraded: bool) -> None:
        self.db_degraded.set(1 if degraded else 0)

    def set_storage_full(self, full: bool) -> None:
        self.storage_full.set(1 if full else 0)

    def set_model(self, version: str) -> None:
        """The model in use; a hot swap replaces the previous version's series (only one is ever 1)."""
        if self._model_version is not None and self._model_version != version:
            self.model_info.remove(self._model_version)
        self.model_info.labels(version=version).set(1)
        self._model_version = version

    def mark_frame(self, when: datetime | float | None = None) -> None:
        """A frame finished; ``when`` is an aware datetime or Unix seconds (default: now)."""
        if when is None:
            value = time.time()
        elif isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValueError("mark_frame needs a timezone-aware datetime")
            value = when.timestamp()
        else:
            value = float(when)
        self.last_frame_timestamp.set(value)

    # --- exposition -------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)
