"""From a stored frame result to reject signals: judge OK/NG with the reject rule, notify every sink
that wants the event, record each signal (or its failure) in the alarms table, count it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from inspection.alarms import AlarmError, DefectSummary, RejectEvent, build_sinks, close_sinks, wants
from inspection.alarms.config import AlarmsConfig
from inspection.metrics import AlarmStatus, DaemonMetrics
from inspection.results import FrameResult
from inspection.storage.records import AlarmRecord, DefectRecord, FrameRecord

log = logging.getLogger("steel.alarms")


class AlarmWriter(Protocol):
    """Where alarm rows go: the daemon's resilient writer (database, else spool)."""

    def write_alarm(self, alarm: AlarmRecord, /) -> object: ...


class AlarmDispatcher:
    """Runs in the sink thread (the one database writer), after the frame is committed, so an alarm
    row always has its frame. A sink that fails is recorded with its reason and never stops storage."""

    def __init__(
        self,
        cfg: dict | AlarmsConfig,
        *,
        repository_writer: AlarmWriter,
        class_names: list[str],
        metrics: DaemonMetrics | None = None,
        operating_point: Callable[[str], Mapping[str, float]] | None = None,
    ):
        self.cfg = cfg if isinstance(cfg, AlarmsConfig) else AlarmsConfig.model_validate(cfg)
        self.sinks = build_sinks(self.cfg)
        self.writer = repository_writer
        self.metrics = metrics
        # Asked per frame with the frame's model version: the reject rule's default is the operating point
        # of the model that scored the frame, also across a model swap.
        self.operating_point = operating_point

    def __call__(self, result: FrameResult, record: FrameRecord, defects: list[DefectRecord]) -> None:
        summaries = [
            DefectSummary(
                class_name=d.class_name,
                score=d.score,
                position_m=d.position_m,
                cross_m=d.cross_m,
                track_id=d.track_id,
                length_m=d.length_m,
            )
            for d in defects
        ]
        event = RejectEvent.judge(
            source=record.source,
            seq=record.seq,
            line=record.line or "",
            coil=record.coil,
            captured_at=result.frame.captured_at,
            defects=summaries,
            rule=self.cfg.reject,
            position_m=record.position_m,
            model_version=result.model_version,
            operating_point=(
                self.operating_point(result.model_version) if self.operating_point is not None else None
            ),
        )
        for sink in self.sinks:
            if not wants(sink, event):
                continue
            status: AlarmStatus
            error: str | None
            try:
                status, error = sink.notify(event), None
            except AlarmError as exc:
                status, error = "failed", exc.reason
                log.warning(
                    "alarm sink %s failed for %s#%s: %s", sink.name, record.source, record.seq, exc.reason
                )
            if self.metrics is not None:
                self.metrics.count_alarm(sink.name, event.verdict, status)
            if status == "skipped":
                continue
            self.writer.write_alarm(
                AlarmRecord(
                    source=record.source,
                    seq=record.seq,
                    sink=sink.name,
                    kind=event.verdict,
                    status=status,
                    payload=event.to_dict(),
                    error=error,
                )
            )

    def close(self) -> None:
        close_sinks(self.sinks)
