"""Prometheus metrics (read back through the text format) and the /health + /metrics HTTP endpoint."""

from __future__ import annotations

import json
import math
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inspection.health import HealthServer, health_report
from inspection.metrics import LATENCY_BUCKETS_S, DaemonMetrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from Prometheus exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


# --- metrics ----------------------------------------------------------------------------------------


def test_counters_are_recorded_where_things_happen() -> None:
    m = DaemonMetrics()
    for _ in range(3):
        m.count_frame("cam-a", "ok")
    m.count_frame("cam-a", "failed")
    m.count_drop("detect", source="cam-a")
    m.count_drop("detect", source="cam-b")
    m.count_defects(["crazing", "crazing", "inclusion"])
    m.count_defects([])  # a defect-free frame counts nothing
    m.count_alarm("plc", "NG", "acked")
    m.count_alarm("plc", "OK", "failed")
    m.count_source_gap("cam-a")
    m.count_spooled(4)
    text = m.exposition().decode()
    assert value(text, "steel_frames_total", source="cam-a", status="ok") == 3
    assert value(text, "steel_frames_total", source="cam-a", status="failed") == 1
    assert value(text, "steel_frames_total", source="cam-a", status="dropped") == 1
    assert value(text, "steel_frames_total", source="cam-b", status="dropped") == 1
    assert value(text, "steel_dropped_frames_total", queue="detect") == 2
    assert value(text, "steel_defects_total", class_name="crazing") == 2
    assert value(text, "steel_defects_total", class_name="inclusion") == 1
    assert value(text, "steel_alarms_total", sink="plc", verdict="NG", status="acked") == 1
    assert value(text, "steel_alarms_total", sink="plc", verdict="OK", status="failed") == 1
    assert value(text, "steel_source_gaps_total", source="cam-a") == 1
    assert value(text, "steel_db_spooled_total") == 4


@pytest.mark.parametrize(
    ("method", "args"), [("count_frame", ("s", "lost")), ("count_alarm", ("x", "NG", "ok"))]
)
def test_unknown_statuses_are_refused(method: str, args: tuple) -> None:
    with pytest.raises(ValueError, match="status"):
        getattr(DaemonMetrics(), method)(*args)


def test_stage_latency_histogram_and_context_manager() -> None:
    m = DaemonMetrics()
    m.observe_stage_seconds("detect", 0.003)
    m.observe_stage_seconds("detect", 4.0)
    with pytest.raises(RuntimeError), m.observe_stage("merge"):
        raise RuntimeError("a failing stage is still timed")
    text = m.exposition().decode()
    assert value(text, "steel_stage_latency_seconds_count", stage="detect") == 2
    assert value(text, "steel_stage_latency_seconds_sum", stage="detect") == pytest.approx(4.003)
    assert value(text, "steel_stage_latency_seconds_bucket", stage="detect", le="0.005") == 1
    assert value(text, "steel_stage_latency_seconds_bucket", stage="detect", le="5.0") == 2
    assert value(text, "steel_stage_latency_seconds_count", stage="merge") == 1
    buckets = sorted(
        float(dict(labels)["le"])
        for name, labels in samples(text)
        if name == "steel_stage_latency_seconds_bucket" and dict(labels)["stage"] == "detect"
    )
    assert buckets[:-1] == list(LATENCY_BUCKETS_S) and math.isinf(buckets[-1])
    assert LATENCY_BUCKETS_S[0] == 0.001 and LATENCY_BUCKETS_S[-1] == 10.0


def test_gauges_model_swap_and_last_frame() -> None:
    m = DaemonMetrics()
    m.set_queue_depth("tile", 5)
    m.set_queue_depth("tile", 2)
    m.set_db_degraded(True)
    m.set_model("neu-yolo-n@1")
    m.set_model("neu-yolo-n@2")  # hot swap
    m.mark_frame(datetime(2024, 1, 1, tzinfo=UTC))
    text = m.exposition().decode()
    assert value(text, "steel_queue_depth", queue="tile") == 2
    assert value(text, "steel_db_degraded") == 1
    model_series = {k: v for k, v in samples(text).items() if k[0] == "steel_model_info"}
    assert model_series == {("steel_model_info", (("version", "neu-yolo-n@2"),)): 1.0}
    assert value(text, "steel_last_frame_timestamp_seconds") == 1704067200.0
    with pytest.raises(ValueError, match="timezone"):
        m.mark_frame(datetime(2024, 1, 1))


def test_each_daemon_has_its_own_registry() -> None:
    a, b = DaemonMetrics(), DaemonMetrics()  # would raise "Duplicated timeseries" on a shared registry
    a.count_frame("s", "ok")
    assert value(a.exposition().decode(), "steel_frames_total", source="s", status="ok") == 1
    assert value(b.exposition().decode(), "steel_frames_total", source="s", status="ok") is None


# --- health report ----------------------------------------------------------------------------------

REPORT_CASES = [
    # (stopping, heartbeat ages, budgets, status, stale stages)
    (False, {"detect": 1.0, "merge": 2.0}, 30.0, "ok", []),
    (False, {}, 30.0, "ok", []),  # no stage started yet
    (False, {"detect": 31.0, "merge": 2.0}, 30.0, "degraded", ["detect"]),
    (False, {"detect": math.inf}, 30.0, "degraded", ["detect"]),  # never beat
    (False, {"detect": 31.0, "sinks": 50.0}, {"detect": 60.0, "sinks": 40.0}, "degraded", ["sinks"]),
    (False, {"detect": 31.0, "other": 1e6}, {"detect": 60.0}, "ok", []),  # no budget: never stale
    (True, {"detect": 1.0}, 30.0, "stopping", []),
    (True, {"detect": 99.0}, 30.0, "stopping", ["detect"]),
]


@pytest.mark.parametrize(("stopping", "ages", "budgets", "status", "stale"), REPORT_CASES)
def test_health_report_status(stopping: bool, ages: dict, budgets: Any, status: str, stale: list) -> None:
    report = health_report(stopping=stopping, heartbeat_ages_s=ages, budgets_s=budgets)
    assert report["status"] == status
    assert report["stale_stages"] == stale


def test_health_report_fields_are_json_ready() -> None:
    report = health_report(
        stopping=False,
        heartbeat_ages_s={"merge": 0.12345, "detect": math.inf},
        budgets_s={"merge": 5.0},
        last_frame_age_s=None,
        queue_depths={"tile": 3, "detect": 0},
        db_degraded=True,
        model_version="v2",
    )
    assert json.loads(json.dumps(report, allow_nan=False)) == {
        "status": "ok",  # spooling alone is not unhealthy
        "stale_stages": [],
        "last_frame_age_s": None,
        "heartbeat_ages_s": {"detect": None, "merge": 0.123},
        "queue_depths": {"detect": 0, "tile": 3},
        "db_degraded": True,
        "storage_full": False,
        "model_version": "v2",
    }


def test_a_full_disk_under_database_and_spool_makes_health_red() -> None:
    report = health_report(stopping=False, heartbeat_ages_s={"sink": 0.1}, budgets_s=5.0, storage_full=True)
    assert (report["status"], report["storage_full"]) == ("degraded", True)


# --- the HTTP endpoint on loopback ------------------------------------------------------------------


class State:
    def __init__(self) -> None:
        self.report: dict[str, Any] = {"status": "ok", "model_version": "v1"}
        self.broken = False

    def __call__(self) -> dict[str, Any]:
        if self.broken:
            raise KeyError("stage table")
        return self.report


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, State, DaemonMetrics]]:
    metrics, state = DaemonMetrics(), State()
    server = HealthServer(health=state, registry=metrics.registry, port=0).start()
    yield server, state, metrics
    server.stop()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_metrics_endpoint_serves_the_registry(served: tuple[HealthServer, State, DaemonMetrics]) -> None:
    server, _, metrics = served
    assert server.port > 0
    metrics.count_frame("cam", "ok")
    metrics.observe_stage_seconds("detect", 0.02)
    code, content_type, text = get(f"{server.url}/metrics")
    assert code == 200 and content_type.startswith("text/plain")
    assert value(text, "steel_frames_total", source="cam", status="ok") == 1
    assert value(text, "steel_stage_latency_seconds_count", stage="detect") == 1
    metrics.count_frame("cam", "ok")  # the next scrape sees the new value
    assert value(get(f"{server.url}/metrics")[2], "steel_frames_total", source="cam", status="ok") == 2


@pytest.mark.parametrize(
    ("status", "code"), [("ok", 200), ("degraded", 503), ("stopping", 503), ("weird", 500)]
)
def test_health_status_maps_to_http_code(
    served: tuple[HealthServer, State, DaemonMetrics], status: str, code: int
) -> None:
    server, state, _ = served
    state.report = {"status": status, "last_frame_age_s": 0.5, "db_degraded": False}
    got, content_type, body = get(f"{server.url}/health")
    assert (got, content_type) == (code, "application/json")
    payload = json.loads(body)
    assert payload["status"] == status and payload["last_frame_age_s"] == 0.5


def test_health_with_a_real_report_and_a_crashing_callable(
    served: tuple[HealthServer, State, DaemonMetrics],
) -> None:
    server, state, _ = served
    state.report = health_report(stopping=False, heartbeat_ages_s={"detect": 45.0}, budgets_s=30.0)
    code, _, body = get(f"{server.url}/health")
    assert code == 503 and json.loads(body)["stale_stages"] == ["detect"]
    state.broken = True
    code, _, body = get(f"{server.url}/health")
    assert code == 500 and "KeyError" in json.loads(body)["error"]


def test_unknown_path_is_404(served: tuple[HealthServer, State, DaemonMetrics]) -> None:
    server, _, _ = served
    assert get(f"{server.url}/nope")[0] == 404


def test_stop_releases_the_port_and_a_taken_port_fails_at_start() -> None:
    metrics = DaemonMetrics()
    server = HealthServer(health=lambda: {"status": "ok"}, registry=metrics.registry).start()
    port = server.port
    with pytest.raises(OSError):
        HealthServer(health=lambda: {"status": "ok"}, registry=metrics.registry, port=port).start()
    server.stop()
    server.stop()  # idempotent
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
