"""Outputs for frame results: a log line, an HTTP webhook, a PLC over Modbus TCP.

The daemon builds its sinks once with :func:`build_sinks`, judges each frame with
:meth:`RejectEvent.judge` and calls ``sink.notify(event)`` for every sink that :func:`wants` it.
"""

from __future__ import annotations

from inspection.alarms.base import (
    AlarmError,
    AlarmSink,
    DefectSummary,
    Delivery,
    RejectEvent,
    Verdict,
    decide,
    judge,
    rejecting,
    wants,
)
from inspection.alarms.config import (
    AlarmsConfig,
    LogSinkConfig,
    ModbusRegisterMap,
    ModbusSinkConfig,
    RejectRule,
    WebhookSinkConfig,
)
from inspection.alarms.log_sink import LogSink
from inspection.alarms.webhook import WebhookSink

__all__ = [
    "AlarmError",
    "AlarmSink",
    "AlarmsConfig",
    "DefectSummary",
    "Delivery",
    "LogSinkConfig",
    "ModbusRegisterMap",
    "ModbusSinkConfig",
    "RejectEvent",
    "RejectRule",
    "Verdict",
    "WebhookSinkConfig",
    "build_sinks",
    "close_sinks",
    "decide",
    "judge",
    "rejecting",
    "wants",
]


def build_sinks(cfg: AlarmsConfig) -> list[AlarmSink]:
    """One sink per ``cfg.sinks`` entry, in order. Connects to nothing yet (a PLC on the first event).

    Raises:
        ImportError: a ``modbus`` sink is configured and pymodbus is not installed (``pip install '.[plc]'``).
    """
    sinks: list[AlarmSink] = []
    for sink_cfg in cfg.sinks:
        if isinstance(sink_cfg, LogSinkConfig):
            sinks.append(LogSink(sink_cfg))
        elif isinstance(sink_cfg, WebhookSinkConfig):
            sinks.append(WebhookSink(sink_cfg))
        else:
            from inspection.alarms.modbus_plc import ModbusPlcSink  # pymodbus is an optional extra

            sinks.append(ModbusPlcSink(sink_cfg))
    return sinks


def close_sinks(sinks: list[AlarmSink]) -> None:
    """Close every sink, even when one fails to close (the first error is re-raised at the end)."""
    first: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # one broken sink must not keep the others open
            first = first or exc
    if first is not None:
        raise first
