"""The reject rule, the alarm config, the log sink and the webhook (against a real HTTP server on loopback).

No timing assertions: timeouts are exercised through what they make the sink do.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from datasets.model import NEU_DET_CLASSES
from inspection.alarms import (
    AlarmError,
    AlarmsConfig,
    AlarmSink,
    DefectSummary,
    LogSinkConfig,
    RejectEvent,
    RejectRule,
    WebhookSinkConfig,
    build_sinks,
    close_sinks,
    decide,
    judge,
    wants,
)
from inspection.alarms.log_sink import LOGGER_NAME, LogSink
from inspection.alarms.webhook import WebhookSink

T0 = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


def defect(name: str, score: float, length_m: float | None = None, track: str | None = None) -> DefectSummary:
    return DefectSummary(name, score, position_m=12.5, cross_m=0.4, track_id=track, length_m=length_m)


def ng_event(seq: int = 7) -> RejectEvent:
    return RejectEvent.judge(
        source="strip-sim:a",
        seq=seq,
        line="line-1",
        coil="C-001",
        captured_at=T0,
        defects=[defect("scratches", 0.6, 0.01, "t2"), defect("inclusion", 0.9, 0.003, "t1")],
        rule=RejectRule(),
        position_m=12.0,
        model_version="neu-yolo-n@3",
    )


def ok_event(seq: int = 8) -> RejectEvent:
    return RejectEvent.judge(
        source="strip-sim:a",
        seq=seq,
        line="line-1",
        coil=None,
        captured_at=T0,
        defects=[],
        rule=RejectRule(),
        model_version="neu-yolo-n@3",
    )


# --- the reject rule --------------------------------------------------------------------------------

CASES = [
    # (defects, rule kwargs, verdict, names of the rejecting defects in order)
    ([], {}, "OK", []),  # defect-free steel
    ([], {"classes": ["inclusion"], "min_score": 0.9}, "OK", []),
    ([("crazing", 0.1, None)], {}, "NG", ["crazing"]),  # default: every class, any score
    ([("crazing", 0.4, None), ("patches", 0.7, None)], {"min_score": 0.5}, "NG", ["patches"]),
    ([("crazing", 0.4, None)], {"min_score": 0.5}, "OK", []),
    ([("crazing", 0.5, None)], {"min_score": 0.5}, "NG", ["crazing"]),  # the bound is inclusive
    ([("crazing", 0.9, None), ("inclusion", 0.3, None)], {"classes": ["inclusion"]}, "NG", ["inclusion"]),
    ([("crazing", 0.9, None)], {"classes": ["inclusion", "scratches"]}, "OK", []),
    ([("crazing", 0.9, None)], {"classes": []}, "OK", []),  # nothing rejects
    ([("scratches", 0.9, 0.001)], {"min_length_m": 0.002}, "OK", []),
    ([("scratches", 0.9, 0.002)], {"min_length_m": 0.002}, "NG", ["scratches"]),
    ([("scratches", 0.9, None)], {"min_length_m": 0.002}, "NG", ["scratches"]),  # unknown length rejects
    (
        [("patches", 0.6, 0.01), ("inclusion", 0.95, 0.01), ("crazing", 0.8, 0.0001)],
        {"min_score": 0.5, "min_length_m": 0.001},
        "NG",
        ["inclusion", "patches"],  # highest score first, the short one left out
    ),
]


@pytest.mark.parametrize(("defects", "rule", "verdict", "names"), CASES)
def test_decide_and_judge(defects: list, rule: dict, verdict: str, names: list[str]) -> None:
    summaries = [defect(n, s, length) for n, s, length in defects]
    r = RejectRule(**rule)
    assert decide(summaries, r) == verdict
    got_verdict, hits = judge(summaries, r)
    assert got_verdict == verdict
    assert [d.class_name for d in hits] == names


# The shipped YOLO-n's calibrated operating point (models/neu-yolo-n/manifest.json, thresholds.per_class).
POINT = {"crazing": 0.1413, "inclusion": 0.3713, "patches": 0.4423, "scratches": 0.4974}

OPERATING_POINT_CASES = [
    # (defects, rule kwargs, operating point, verdict, rejecting names)
    ([("crazing", 0.2, None)], {}, POINT, "NG", ["crazing"]),  # crazing rejects from 0.1413 on
    ([("scratches", 0.2, None)], {}, POINT, "OK", []),  # ...scratches only from 0.4974
    ([("scratches", 0.4974, None)], {}, POINT, "NG", ["scratches"]),  # inclusive, like min_score
    ([("crazing", 0.2, None), ("patches", 0.43, None)], {}, POINT, "NG", ["crazing"]),
    ([("crazing", 0.2, None)], {"min_score": 0.5}, POINT, "OK", []),  # an explicit value wins
    ([("scratches", 0.3, None)], {"min_score": 0.25}, POINT, "NG", ["scratches"]),  # ...both ways
    ([("crazing", 0.2, None)], {"classes": ["scratches"]}, POINT, "OK", []),  # classes still select
    ([("pitted_surface", 0.01, None)], {}, POINT, "NG", ["pitted_surface"]),  # class without a point
    ([("crazing", 0.01, None)], {}, None, "NG", ["crazing"]),  # no model point known: any score
]


@pytest.mark.parametrize(("defects", "rule", "point", "verdict", "names"), OPERATING_POINT_CASES)
def test_default_reject_rule_is_the_models_operating_point_and_an_explicit_min_score_wins(
    defects: list, rule: dict, point: dict | None, verdict: str, names: list[str]
) -> None:
    summaries = [defect(n, s, length) for n, s, length in defects]
    got_verdict, hits = judge(summaries, RejectRule(**rule), point)
    assert (got_verdict, [d.class_name for d in hits]) == (verdict, names)
    assert decide(summaries, RejectRule(**rule), point) == verdict


def test_event_judge_keeps_only_rejecting_defects_and_serialises() -> None:
    rule = RejectRule(classes=["inclusion"])
    event = RejectEvent.judge(
        source="s",
        seq=3,
        line="L",
        coil="C",
        captured_at=T0,
        defects=[defect("scratches", 0.99), defect("inclusion", 0.4, track="t9")],
        rule=rule,
        position_m=1.25,
        model_version="v1",
    )
    assert event.verdict == "NG"
    assert [d.track_id for d in event.defects] == ["t9"]
    data = json.loads(json.dumps(event.to_dict()))
    assert data["captured_at"] == "2024-05-06T07:08:09.123000+00:00"
    assert data["defect_count"] == 1
    assert data["defects"][0] == {
        "class_name": "inclusion",
        "score": 0.4,
        "position_m": 12.5,
        "cross_m": 0.4,
        "track_id": "t9",
        "length_m": None,
    }
    assert ok_event().to_dict()["defects"] == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"verdict": "MAYBE"},
        {"captured_at": datetime(2024, 1, 1)},  # naive
        {"verdict": "OK", "defects": (DefectSummary("crazing", 0.5),)},  # OK cannot carry rejecting defects
    ],
)
def test_event_rejects_bad_values(kwargs: dict) -> None:
    base = {"source": "s", "seq": 1, "line": "L", "coil": None, "captured_at": T0, "verdict": "NG"}
    with pytest.raises(ValueError):
        RejectEvent(**{**base, **kwargs})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"class_name": "", "score": 0.5},
        {"class_name": "x", "score": 1.5},
        {"class_name": "x", "score": 0.5, "position_m": float("nan")},
    ],
)
def test_defect_summary_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DefectSummary(**kwargs)


def test_event_accepts_other_timezones() -> None:
    cet = datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    event = RejectEvent(source="s", seq=1, line="L", coil=None, captured_at=cet, verdict="OK")
    assert event.to_dict()["captured_at"].endswith("+02:00")


# --- config -----------------------------------------------------------------------------------------


def test_config_defaults_and_discriminated_union() -> None:
    assert [type(s) for s in AlarmsConfig().sinks] == [LogSinkConfig]
    cfg = AlarmsConfig.model_validate(
        {
            "reject": {"classes": ["inclusion"], "min_score": 0.5},
            "sinks": [
                {"kind": "log"},
                {"kind": "webhook", "url": "https://mes.example/ng", "headers": {"X-Token": "t"}},
                {"kind": "modbus", "host": "10.0.0.20", "registers": {"ack_coil": 10}},
            ],
        }
    )
    log_cfg, hook, plc = cfg.sinks
    assert (log_cfg.notify_ok, hook.notify_ok, plc.notify_ok) == (False, False, True)
    assert (hook.timeout_s, hook.retries) == (2.0, 2)
    assert (plc.port, plc.device_id, plc.registers.ack_coil, plc.registers.results_ready_coil) == (
        502,
        1,
        10,
        1,
    )
    assert plc.class_codes == {name: i + 1 for i, name in enumerate(NEU_DET_CLASSES)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sinks": [{"kind": "email"}]}, "kind"),
        ({"sinks": [{"kind": "webhook", "url": "ftp://x/y"}]}, "http"),
        ({"sinks": [{"kind": "webhook", "url": "http://x", "timeout_s": 0}]}, "timeout_s"),
        ({"sinks": [{"kind": "webhook", "url": "http://x", "retry": 3}]}, "retry"),  # typo: extra key
        ({"sinks": [{"kind": "log"}, {"kind": "log"}]}, "unique"),
        ({"sinks": [{"kind": "modbus", "host": "h", "registers": {"ack_coil": 1}}]}, "share coil address 1"),
        (
            {
                "sinks": [
                    {"kind": "modbus", "host": "h", "registers": {"ng_coil": None, "result_register": None}}
                ]
            },
            "verdict",
        ),
        (
            {
                "sinks": [
                    {
                        "kind": "modbus",
                        "host": "h",
                        "require_trigger": True,
                        "registers": {"trigger_coil": None},
                    }
                ]
            },
            "trigger",
        ),
        ({"sinks": [{"kind": "modbus", "host": "h", "class_codes": {"crazing": 0}}]}, "1..65534"),
        ({"reject": {"min_score": 1.5}}, "min_score"),
    ],
)
def test_config_errors(data: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlarmsConfig.model_validate(data)


def test_build_sinks_in_order_and_wants() -> None:
    cfg = AlarmsConfig.model_validate(
        {"sinks": [{"kind": "log", "notify_ok": True}, {"kind": "webhook", "url": "http://127.0.0.1:9/x"}]}
    )
    sinks = build_sinks(cfg)
    assert [type(s) for s in sinks] == [LogSink, WebhookSink]
    assert all(isinstance(s, AlarmSink) for s in sinks)
    assert [wants(s, ok_event()) for s in sinks] == [True, False]
    assert [wants(s, ng_event()) for s in sinks] == [True, True]
    close_sinks(sinks)
    with pytest.raises(AlarmError, match="closed"):
        sinks[1].notify(ng_event())


# --- log sink ---------------------------------------------------------------------------------------


def test_log_sink_writes_one_json_line_per_event(caplog: pytest.LogCaptureFixture) -> None:
    sink = LogSink(LogSinkConfig(notify_ok=True))
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        assert sink.notify(ng_event(seq=41)) == "sent"
        assert sink.notify(ok_event(seq=42)) == "sent"
    records = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO]
    first = json.loads(records[0].getMessage())
    assert first["seq"] == 41 and first["verdict"] == "NG" and first["sink"] == "log"
    assert [d["class_name"] for d in first["defects"]] == ["inclusion", "scratches"]
    assert json.loads(records[1].getMessage())["verdict"] == "OK"
    assert records[0].event["seq"] == 41  # structured copy for handlers


def test_log_sink_refuses_non_finite_numbers() -> None:
    event = RejectEvent(
        source="s", seq=1, line="L", coil=None, captured_at=T0, verdict="OK", position_m=float("inf")
    )
    with pytest.raises(AlarmError, match="JSON"):
        LogSink().notify(event)


# --- webhook against a real server ------------------------------------------------------------------


@dataclass
class Receiver:
    """A loopback HTTP server that answers each POST with the next scripted reply (then 200)."""

    script: list[int | str] = field(default_factory=list)  # HTTP status, "hang" (never answer) or "drop"
    bodies: list[dict] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.bodies.append(json.loads(body))
                state.headers.append(dict(self.headers))
                reply = state.script.pop(0) if state.script else 200
            if reply == "hang":
                state.release.wait(10)
                return
            if reply == "drop":  # close the connection without a reply
                self.close_connection = True
                return
            self.send_response(int(reply))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/steel/ng"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def hook(url: str, **kwargs: object) -> WebhookSink:
    return WebhookSink(WebhookSinkConfig(kind="webhook", url=url, **kwargs))


def test_webhook_posts_the_event_as_json(receiver: Receiver) -> None:
    sink = hook(receiver.url, headers={"X-Token": "secret"})
    assert sink.notify(ng_event(seq=5)) == "sent"
    assert sink.attempts == 1
    assert receiver.bodies == [ng_event(seq=5).to_dict()]
    assert receiver.headers[0]["Content-Type"] == "application/json"
    assert receiver.headers[0]["X-Token"] == "secret"


def test_webhook_retries_a_server_error_then_succeeds(receiver: Receiver) -> None:
    receiver.script = [500, 503]
    sink = hook(receiver.url, retries=2, backoff_s=0.01)
    assert sink.notify(ng_event()) == "sent"
    assert sink.attempts == 3
    assert len(receiver.bodies) == 3 and receiver.bodies[0] == receiver.bodies[2]


def test_webhook_retries_a_dropped_connection(receiver: Receiver) -> None:
    receiver.script = ["drop"]
    sink = hook(receiver.url, retries=1, backoff_s=0.0)
    assert sink.notify(ng_event()) == "sent"
    assert sink.attempts == 2


def test_webhook_gives_up_after_its_retries(receiver: Receiver) -> None:
    receiver.script = [500, 500, 500]
    sink = hook(receiver.url, retries=1, backoff_s=0.0)
    with pytest.raises(AlarmError, match="HTTP 500") as err:
        sink.notify(ng_event())
    assert "2 attempts" in err.value.reason and err.value.sink == "webhook"
    assert sink.attempts == 2 and len(receiver.bodies) == 2


def test_webhook_does_not_retry_a_client_error(receiver: Receiver) -> None:
    receiver.script = [404]
    sink = hook(receiver.url, retries=3, backoff_s=0.0)
    with pytest.raises(AlarmError, match="HTTP 404.*not retried"):
        sink.notify(ng_event())
    assert sink.attempts == 1


def test_webhook_timeout_raises_alarm_error(receiver: Receiver) -> None:
    receiver.script = ["hang", "hang"]
    sink = hook(receiver.url, timeout_s=0.2, retries=1, backoff_s=0.0)
    with pytest.raises(AlarmError, match="timed out"):
        sink.notify(ng_event())
    assert sink.attempts == 2
    assert sink.timeout_s == pytest.approx(0.4)


def test_webhook_unreachable_receiver(receiver: Receiver) -> None:
    # a port nobody listens on: bind one, note it, release it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = hook(f"http://127.0.0.1:{port}/x", timeout_s=1.0, retries=0)
    with pytest.raises(AlarmError, match="cannot reach"):
        sink.notify(ng_event())
