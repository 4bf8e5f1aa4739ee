"""Sink stage: the one writer. Stores each frame with its new defects in one transaction (or the
spool while the database is away) with the evidence files the evidence stage wrote for it,
raises reject signals, and records failed, dropped and gap events, counted, never silent."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from inspection.messages import FailedFrame, Frame, FrameResult, Message, SourceGap, TrackedDefect
from inspection.metrics import DaemonMetrics
from inspection.queues import BoundedQueue, Empty, EndOfStream
from inspection.stages.base import Stage
from inspection.stages.coils import CoilWatch
from inspection.stages.evidence import EvidenceWriter
from inspection.storage.coil_events import CoilEvent
from inspection.storage.grading import GradingRules
from inspection.storage.records import DefectRecord, FrameRecord, GapRecord
from inspection.storage.writer import ResilientWriter

if TYPE_CHECKING:
    from inspection.alarm_dispatch import AlarmDispatcher

log = logging.getLogger("steel.sink")


@dataclass
class Tally:
    """What the daemon did, for ``--json`` and the demo summary."""

    frames: int = 0
    frames_failed: int = 0
    frames_dropped: int = 0
    evidence_missing: int = 0  # frames stored without their crops/images (disk full, unwritable folder)
    duplicates: int = 0
    spooled: int = 0
    held: int = 0  # records kept in memory while the database and the spool were both full
    gaps: int = 0
    coils_closed: int = 0
    defects: int = 0
    per_class: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Geometry:
    mm_per_line: float
    mm_per_px: float

    def along_m(self, line: float) -> float:
        return line * self.mm_per_line / 1000.0

    def across_m(self, px: float) -> float:
        return px * self.mm_per_px / 1000.0


class SinkStage(Stage[Message]):
    accepts = (FrameResult, FailedFrame, SourceGap)

    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: None = None,  # the last stage: nothing after it
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        writer: ResilientWriter,
        evidence: EvidenceWriter,  # writes a frame's files when no evidence stage did (evidence_workers: 0)
        geometry: Geometry,
        line: str,
        coil: str | None,
        alarm: AlarmDispatcher | None = None,  # reject signals for each stored frame
        coil_gap_s: float | None = None,  # a coil with no frame for this long ends (None: never)
        coil_grading: GradingRules | None = None,  # each coil ended is graded by these (None: not graded)
        surface: str | None = None,  # the strip surface of frames whose source does not say
    ) -> None:
        super().__init__("sink", inbox, outbox, abort=abort, metrics=metrics)
        self.coils = CoilWatch(gap_s=coil_gap_s, grading=coil_grading)
        self.writer = writer
        self.evidence = evidence
        self.geometry = geometry
        self.line = line
        self.coil = coil
        self.surface = surface
        self.alarm = alarm
        self.tally = Tally()
        self.dropped: deque[Frame | FailedFrame | SourceGap] = deque()
        self._dropped_lock = threading.Lock()
        self._last_end_line: dict[str, int] = {}

    # -- called from other threads -------------------------------------------------------------
    def on_drop(self, msg: Message) -> None:
        """A queue dropped ``msg`` (backpressure): remember it so a 'dropped' row is written.

        A failed frame or a source gap needs nothing from the stages it skipped: it is stored as it is.
        """
        if isinstance(msg, FailedFrame | SourceGap):
            with self._dropped_lock:
                self.dropped.append(msg)
            return
        frame = getattr(msg, "frame", msg)
        frames = getattr(msg, "frames", None) or ([frame] if isinstance(frame, Frame) else [])
        with self._dropped_lock:
            self.dropped.extend(frames)
        if self.metrics is not None:
            for f in frames:
                self.metrics.count_drop(getattr(msg, "queue", "pipeline"), source=f.source)

    # -- the stage ---------------------------------------------------------------------------------
    def run(self) -> None:
        while not self.abort.is_set():
            self.heartbeat = time.monotonic()
            self._write_dropped()
            try:
                msg = self.inbox.get(timeout=0.2)
            except Empty:
                self._store_coil_events(self.coils.idle())
                continue
            if isinstance(msg, EndOfStream):
                self._write_dropped()
                self._store_coil_events(self.coils.drain())
                return
            started = time.perf_counter()
            try:
                self.handle(msg)
            except Exception as exc:  # count it, keep the line running, and keep a row for the frame
                log.exception("sink failed on %r", getattr(msg, "seq", msg))
                self._store_broken(msg, exc)
            if self.metrics is not None:
                self.metrics.observe_stage_seconds("sink", time.perf_counter() - started)

    def handle(self, msg: Message) -> Iterable[Message]:
        if isinstance(msg, FrameResult):
            self._store_result(msg)
        elif isinstance(msg, FailedFrame):
            self._store_failed(msg)
        elif isinstance(msg, SourceGap):
            gap = GapRecord(
                source=msg.source,
                started_at=msg.started_at,
                ended_at=msg.ended_at,
                reason=msg.reason[:2000],
                line=self.line,
                first_missing_line=msg.first_missing_line,
                missing_lines=msg.missing_lines,
            )
            if self.writer.write_gap(gap) == "spooled":  # stored later, in order, from the spool
                self.tally.spooled += 1
            self.tally.gaps += 1
            log.warning(
                "source gap on %s: %s (%.1f s, lines missing: %s)",
                msg.source,
                msg.reason,
                msg.duration_s,
                msg.missing_lines,
            )
            if self.metrics is not None:
                self.metrics.count_source_gap(msg.source)
        return ()

    def _store_coil_events(self, events: list[CoilEvent]) -> None:
        for event in events:
            try:
                self._count_outcome(self.writer.write_coil_event(event))
            except Exception:  # a coil's end is bookkeeping: never let it stop the line
                log.exception("coil %s %s on %s not stored", event.coil, event.kind, event.line)
                continue
            if event.kind == "end":
                self.tally.coils_closed += 1
                log.info("coil %s on %s ended at %s", event.coil, event.line, event.at.isoformat())

    def _coil_of(self, frame: Frame) -> None:
        line = frame.line_id or self.line
        self._store_coil_events(
            self.coils.frame(frame.source, line, frame.coil or self.coil, frame.captured_at)
        )

    def _store_broken(self, msg: object, exc: Exception) -> None:
        """A frame result the sink could not store as scored becomes a 'failed' row with the reason (when
        even that cannot be written, the frame is in the summary's failures and is read again on restart)."""
        frame = msg.frame if isinstance(msg, FrameResult) else None
        reason = f"sink: {type(exc).__name__}: {exc}"
        if frame is None:
            self.tally.failures.append({"source": "?", "seq": getattr(msg, "seq", None), "reason": reason})
            return
        try:
            self._store_failed(FailedFrame(frame.source, frame.seq, frame.captured_at, reason))
        except Exception as again:
            log.error("%s#%s not stored: %s", frame.source, frame.seq, again)
            self.tally.failures.append({"source": frame.source, "seq": frame.seq, "reason": reason})

    def _count_outcome(self, outcome: str) -> None:
        if outcome == "duplicate":
            self.tally.duplicates += 1
        elif outcome == "spooled":
            self.tally.spooled += 1
        elif outcome == "held":
            self.tally.held += 1

    def _write_dropped(self) -> None:
        while True:
            with self._dropped_lock:
                if not self.dropped:
                    return
                frame = self.dropped.popleft()
            if isinstance(frame, FailedFrame | SourceGap):
                self.handle(frame)
                continue
            self._coil_of(frame)
            record = FrameRecord(
                source=frame.source,
                seq=frame.seq,
                status="dropped",
                captured_at=frame.captured_at,
                line=frame.line_id or self.line,
                coil=frame.coil or self.coil,
                surface=frame.surface or self.surface,
                error="dropped by backpressure (queue full)",
                width=frame.width,
                height=frame.height,
                start_line=frame.start_line,
            )
            self._count_outcome(self.writer.write_frame(record))
            self.tally.frames_dropped += 1

    def _store_failed(self, msg: FailedFrame) -> None:
        record = FrameRecord(
            source=msg.source,
            seq=msg.seq,
            status="failed",
            captured_at=msg.captured_at,
            line=self.line,
            coil=self.coil,
            error=msg.reason[:2000],
        )
        self._count_outcome(self.writer.write_frame(record))
        self.tally.frames_failed += 1
        self.tally.failures.append({"source": msg.source, "seq": msg.seq, "reason": msg.reason})
        if self.metrics is not None:
            self.metrics.count_frame(msg.source, "failed")

    def _defect_record(
        self, frame: Frame, d: TrackedDefect, crop_path: str | None, map_path: str | None = None
    ) -> DefectRecord:
        g = self.geometry
        x1, y1, x2, y2 = d.xyxy
        strip = d.strip_xyxy
        return DefectRecord(
            class_name=d.class_name,
            score=d.score,
            xyxy=(x1, y1, x2, y2),
            strip_xyxy=strip,
            position_m=None if strip is None else g.along_m(strip[1]),
            cross_m=g.across_m(x1),
            length_m=g.along_m(y2 - y1),
            width_m=g.across_m(x2 - x1),
            track_id=d.track_id,
            first_frame_seq=d.first_frame_seq,
            last_frame_seq=frame.seq,
            crop_path=crop_path,
            map_path=map_path,
        )

    def _store_result(self, result: FrameResult) -> None:
        frame = result.frame
        g = self.geometry
        self._coil_of(frame)
        # Written by the evidence stage in the daemon; here only when the sink is fed without one.
        evidence = result.evidence if result.evidence is not None else self.evidence.write_now(result)
        defects = [
            self._defect_record(frame, d, evidence.crop_of(d.track_id), evidence.map_of(d.track_id))
            for d in result.new_defects
        ]
        image_path, evidence_problem = evidence.image_path, evidence.problem
        length_m = None
        start_line, end_line = frame.start_line, frame.end_line  # both set (line-scan) or both None
        if start_line is not None and end_line is not None:
            covered_from = max(start_line, self._last_end_line.get(frame.source, start_line))
            length_m = g.along_m(end_line - covered_from)
            self._last_end_line[frame.source] = max(end_line, self._last_end_line.get(frame.source, 0))
        latency_ms = (datetime.now(UTC) - frame.captured_at).total_seconds() * 1000.0
        record = FrameRecord(
            source=frame.source,
            seq=frame.seq,
            status="ok",
            captured_at=frame.captured_at,
            line=frame.line_id or self.line,
            coil=frame.coil or self.coil,
            surface=frame.surface or self.surface,
            width=frame.width,
            height=frame.height,
            start_line=frame.start_line,
            position_m=None if frame.start_line is None else g.along_m(frame.start_line),
            length_m=length_m,
            image_path=image_path,
            model_version=result.model_version,
            latency_ms=latency_ms,
            error=evidence_problem,  # an ok frame with an error: scored and stored, evidence missing
        )
        outcome = self.writer.write_frame(record, defects, seen_again=result.seen_again)
        self._count_outcome(outcome)
        if outcome == "duplicate":
            return
        self.tally.frames += 1
        if evidence_problem is not None:
            self.tally.evidence_missing += 1
            log.error("%s#%s stored without its evidence: %s", frame.source, frame.seq, evidence_problem)
        self.tally.defects += len(defects)
        self.tally.latencies_ms.append(latency_ms)
        for d in defects:
            self.tally.per_class[d.class_name] += 1
        if self.metrics is not None:
            self.metrics.count_frame(frame.source, "ok")
            self.metrics.count_defects([d.class_name for d in defects])
            self.metrics.mark_frame()
            self.metrics.set_db_degraded(self.writer.degraded)
            self.metrics.set_storage_full(self.writer.storage_full)
        if self.alarm is not None:
            try:
                self.alarm(result, record, defects)
            except Exception:  # a broken PLC link must not stop storage
                log.exception("alarm sinks failed for %s#%s", frame.source, frame.seq)
