"""The simplest output: one JSON object per event on the ``steel.alarms`` logger.

A log line is machine-readable (``jq``, a log shipper) because the message itself is JSON; the record
also carries the event dict as ``record.event`` for handlers that format structured records.
"""

from __future__ import annotations

import json
import logging

from inspection.alarms.base import AlarmError, Delivery, RejectEvent
from inspection.alarms.config import LogSinkConfig

LOGGER_NAME = "steel.alarms"


class LogSink:
    """Writes each event as a JSON log line (NG at ``ng_level``, OK at ``ok_level``)."""

    timeout_s = 0.0  # logging never waits on a receiver

    def __init__(self, cfg: LogSinkConfig | None = None, *, logger: logging.Logger | None = None) -> None:
        cfg = cfg or LogSinkConfig()
        self.name = cfg.name
        self.notify_ok = cfg.notify_ok
        self._levels = {"NG": logging.getLevelName(cfg.ng_level), "OK": logging.getLevelName(cfg.ok_level)}
        self._log = logger or logging.getLogger(LOGGER_NAME)

    def notify(self, event: RejectEvent) -> Delivery:
        payload = {"event": "frame_result", "sink": self.name, **event.to_dict()}
        try:
            line = json.dumps(payload, sort_keys=True, allow_nan=False)
        except ValueError as exc:  # a NaN position would make invalid JSON
            raise AlarmError(f"event is not JSON-serialisable: {exc}", sink=self.name) from exc
        self._log.log(self._levels[event.verdict], line, extra={"event": payload})
        return "sent"

    def close(self) -> None:
        return None
