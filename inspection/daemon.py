"""The inspection daemon: builds the pipeline from the config, runs it, drains it on shutdown.

    source -> preprocess -> tile -> batch -> detect -> merge -> anomaly -> track -> evidence -> sink
      (thread)   (thread)     (thread) (thread)  (thread)  (thread)  (thread)  (thread) (pool)    (thread)

Each arrow is a :class:`~inspection.queues.BoundedQueue`. Constructing a :class:`Daemon` does no I/O;
:meth:`Daemon.start` does the start-up work (output folder, database migration and spool replay, the
model, the source, the pipeline) and :meth:`Daemon.run` starts it when not yet started. A database that is
unreachable at start is an outage like one mid-run: results go to the spool until it is back.

Shutdown (SIGTERM/SIGINT) stops the source only; every frame already read flows through and is committed,
then the stages exit in pipeline order. A second signal aborts at once. SIGHUP (or a promotion recorded in
the database) reloads the model between two batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspection.config import InspectionConfig
from inspection.detector import TileDetector, threads_per_call
from inspection.health import health_report
from inspection.metrics import DaemonMetrics
from inspection.pipeline import PipelineParts, build_pipeline
from inspection.sources.base import Source
from inspection.sources.registry import open_source
from inspection.stages.sink import Tally
from inspection.storage.coil_events import CoilEvent, backfill_open_coils
from inspection.storage.db import make_engine
from inspection.storage.frames import processed_seqs
from inspection.storage.grading import grade_closed_coils
from inspection.storage.link import DatabaseLink
from inspection.storage.model_registry import activate_model, active_model, register_model_version
from inspection.storage.repository import Repository
from inspection.storage.spool import SpooledFrame, SpoolEntry, is_connection_error
from inspection.storage.tracks import open_tracks
from inspection.storage.writer import ResilientWriter

log = logging.getLogger("steel.daemon")


@dataclass
class RunSummary:
    source: str
    model_version: str
    elapsed_s: float
    tally: Tally
    spool_pending: bool = False  # results left in the spool (database unreachable at exit)
    model_versions: tuple[str, ...] = ()  # every model this run used, in order (hot swaps included)
    not_stored: list[dict[str, Any]] = field(default_factory=list)  # held in memory, disk still full at exit
    anomalies: dict[str, Any] | None = None  # the anomaly stage's figures (scores, anomaly defects)

    def to_dict(self) -> dict[str, Any]:
        t = self.tally
        lat = np.asarray(t.latencies_ms, dtype=np.float64)
        return {
            "source": self.source,
            "model_version": self.model_version,
            "model_versions": list(self.model_versions or (self.model_version,)),
            "frames": t.frames,
            "frames_failed": t.frames_failed,
            "frames_dropped": t.frames_dropped,
            "frames_evidence_missing": t.evidence_missing,
            "frames_already_stored": t.duplicates,
            "spooled": t.spooled,
            "held_in_memory": t.held,
            "not_stored": len(self.not_stored),
            "spool_pending": self.spool_pending,
            "source_gaps": t.gaps,
            "coils_closed": t.coils_closed,
            "defects": t.defects,
            "per_class": dict(sorted(t.per_class.items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "frames_per_s": round(t.frames / self.elapsed_s, 3) if self.elapsed_s > 0 else None,
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
            "failures": t.failures[:50],
            "anomalies": self.anomalies,
        }


def _entry_key(entry: SpoolEntry) -> dict[str, Any]:
    """What a record left unstored was: kind, source and seq (for the summary and the log)."""
    kind = type(entry).__name__
    if isinstance(entry, CoilEvent):  # a coil event belongs to a line, not to a source's frame
        return {"kind": kind, "line": entry.line, "coil": entry.coil}
    if isinstance(entry, SpooledFrame):
        return {"kind": kind, "source": entry.frame.source, "seq": entry.frame.seq}
    return {"kind": kind, "source": entry.source, "seq": getattr(entry, "seq", None)}


class Daemon:
    """One inspection line: a config, a source, a pipeline, a database writer.

    Args:
        cfg: the validated config.
        once: process what the source has now, then exit (a folder source does not follow).
        model: a bundle folder overriding the database's active model and ``detector.model``.
        metrics: Prometheus metrics to record into (None: none).
        source_options: extra keyword arguments for the source (tests: ``wait``, ``expected_hw``...).
    """

    def __init__(
        self,
        cfg: InspectionConfig,
        *,
        once: bool = False,
        model: str | None = None,
        metrics: DaemonMetrics | None = None,
        source_options: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.once = once
        self.model_override = model
        self.metrics = metrics
        self.source_options = dict(source_options or {})
        self.stop_event = threading.Event()  # stop reading; drain
        self.abort_event = threading.Event()  # stop now
        self.output_dir = Path(cfg.output.dir)
        self.engine = make_engine(cfg.db, create_folder=False)  # connects (and creates files) lazily
        self.link = DatabaseLink(self.engine, on_ready=self._on_database_ready)
        self.repository = Repository(self.engine)
        self.writer = ResilientWriter(
            self.repository,
            self.output_dir / "spool.jsonl",
            link=self.link,
            hold_max=cfg.output.hold_max_records,
            abort=self.abort_event,
        )
        self.detector: TileDetector | None = None
        self.started = False
        self._watch_thread: threading.Thread | None = None

    # -- start-up --------------------------------------------------------------------------------
    def start(self) -> None:
        """The start-up work: output folder, database (migrated, spool replayed; an unreachable one is an
        outage: the daemon starts and spools), the model, the source and the pipeline."""
        if self.started:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        database_up = self._database_up_at_start()
        if database_up:
            self.writer.flush()  # results a previous run left in the spool go first
        model_path = self.model_override or (self._model_from_db() if database_up else None)
        self.detector = TileDetector(
            model_path or self.cfg.detector.model,
            device=self.cfg.detector.device,
            batch_size=self.cfg.detector.batch_tiles,
            score_threshold=self.cfg.detector.score_threshold,
            threads=threads_per_call(self.cfg.detector.threads, self.cfg.detector.workers),
            backend=self.cfg.detector.backend,
            int8=self.cfg.detector.int8,
        )
        if self.link.ready:
            self._guarded("register the model", self._register_model)
        self.source = self._open_source()
        self.source_name = self.source.name
        done = self._guarded("read the stored frames", self._stored_seqs)
        self.skipped_at_start = len(done or ())
        if database_up and not self.writer.degraded:
            self._guarded("close the coils a previous run left open", self._backfill_coils)
        self._build_pipeline(skip=(done or set()).__contains__)
        if done and self.cfg.tracking.enabled:
            self._guarded("resume open tracks", self._resume_tracks)
        self.started = True

    def _database_up_at_start(self) -> bool:
        try:
            self.link.ensure_ready()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning(
                "database unreachable at start (%s): starting anyway, results go to %s until it is back",
                first_line,
                self.writer.spool.path,
            )
            return False
        return True

    def _guarded(self, what: str, work: Callable[[], Any]) -> Any:
        """Run a start-up query; a database that went away meanwhile is logged and skipped (None)."""
        try:
            return work()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            log.warning("could not %s: database unreachable (%s)", what, str(exc).splitlines()[0])
            return None

    def _on_database_ready(self) -> None:
        """The database became reachable (at start, or after an outage/reopen): register the model."""
        if self.detector is not None:
            self._register_model()

    def _open_source(self) -> Source:
        cfg = self.cfg
        options: dict[str, Any] = {"stop": self.stop_event, **self.source_options}
        if cfg.source.startswith("folder:"):
            options.setdefault("follow", not self.once)
            options.setdefault("settle_s", cfg.folder.settle_s)
            options.setdefault("decode_attempts", cfg.folder.decode_attempts)
            options.setdefault("max_pixels", cfg.folder.max_pixels)
        return open_source(cfg.source, **options)

    def _backfill_coils(self) -> None:
        """Close the coils a previous run left open, and grade this source's closed coils not yet graded
        under the configured rules (those just closed, and all of them after a rules change)."""
        with self.repository.transaction() as session:
            closed = backfill_open_coils(session, source=self.source_name)
        graded, batch = 0, -1
        while batch != 0:  # a batch per transaction: a graded coil is not offered again
            with self.repository.transaction() as session:
                batch = grade_closed_coils(session, self.cfg.grading, source=self.source_name)
            graded += batch
        if closed:
            log.info("closed %d coil(s) a previous run left open: %s", len(closed), ", ".join(closed))
        if graded:
            log.info("graded %d closed coil(s) under the configured rules", graded)

    def _resume_tracks(self) -> None:
        """After a restart, reopen the tracks of the defects the last stored frames hold, so a defect in
        the overlap between the last stored frame and the next one is not stored a second time."""
        with self.repository.transaction() as session:
            tracks = open_tracks(session, self.source_name)
        reopened = self.track_stage.resume(self.source_name, tracks)
        if reopened:
            log.info("resumed %d open defect tracks of %s", reopened, self.source_name)

    # -- model versions --------------------------------------------------------------------------
    def _stored_seqs(self) -> set[int]:
        with self.repository.transaction() as session:
            return processed_seqs(session, self.source_name)

    def _model_from_db(self) -> str | None:
        with self.repository.transaction() as session:
            active = active_model(session)
        if active is not None and active.path and Path(active.path).is_dir():
            return active.path
        return None

    def _register_model(self) -> None:
        assert self.detector is not None
        # An absolute path: the retraining job and `steel models activate` may run from another folder.
        with self.repository.transaction() as session:
            register_model_version(session, self.detector.manifest, str(Path(self.detector.path).resolve()))
        with self.repository.transaction() as session:
            if active_model(session) is None:
                activate_model(session, self.detector.version, promoted_by="daemon", kind="daemon")

    def reload_model(self, path: str | None = None) -> bool:
        if self.detector is None:
            return False
        before = self.detector.version
        ok = self.detector.reload(path)
        if not ok:
            return False
        log.info("model swapped: %s -> %s (%s)", before, self.detector.version, self.detector.path)
        self.models_used = [*getattr(self, "models_used", [before]), self.detector.version]
        if self.metrics is not None:
            self.metrics.set_model(self.detector.version)
        try:  # frames name the new version from now on: give it its manifest, not a placeholder row
            with self.repository.transaction() as session:
                register_model_version(session, self.detector.manifest, str(self.detector.path))
        except Exception as exc:  # database away: the frames' placeholder row is filled in later
            log.warning("could not register model %s: %s", self.detector.version, exc)
        return True

    def _watch_promotions(self, every_s: float) -> None:
        """A promotion recorded in the database (``steel models activate``) swaps the model in."""
        while not self.stop_event.wait(every_s):
            try:
                with self.repository.transaction() as session:
                    active = active_model(session)
            except Exception as exc:  # database away: keep the running model
                log.debug("promotion check failed: %s", exc)
                continue
            current = self.detector.version if self.detector is not None else None
            if active is not None and active.version != current and active.path:
                log.info("database promotes %s", active.version)
                self.reload_model(active.path)

    # -- pipeline --------------------------------------------------------------------------------
    def _build_pipeline(self, *, skip: Callable[[int], bool]) -> None:
        assert self.detector is not None
        parts = PipelineParts(
            source=self.source,
            skip=skip,
            detector=self.detector,
            writer=self.writer,
            output_dir=self.output_dir,
            stop=self.stop_event,
            abort=self.abort_event,
            metrics=self.metrics,
        )
        pipeline = build_pipeline(self.cfg, parts)
        self.queues = pipeline.queues
        self.source_stage = pipeline.source_stage
        self.stages = pipeline.stages
        self.track_stage = pipeline.track_stage
        self.anomaly_stage = pipeline.anomaly_stage
        self.sink = pipeline.sink

    def health(self) -> dict[str, Any]:
        """The ``/health`` body: stage heartbeats against their budget, queue depths, spooling."""
        if not self.started:
            return {"status": "starting"}
        assert self.detector is not None
        now = time.monotonic()
        beats = {s.stage_name: now - s.heartbeat for s in self.stages}
        beats["source"] = now - self.source_stage.heartbeat
        return health_report(
            stopping=self.stop_event.is_set(),
            heartbeat_ages_s=beats,
            budgets_s=self.cfg.health.stage_budget_s,
            queue_depths={name: len(queue) for name, queue in self.queues.items()},
            db_degraded=self.writer.degraded,
            storage_full=self.writer.storage_full,
            model_version=self.detector.version,
        )

    # -- running ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if self.stop_event.is_set():
            log.warning("second stop request: aborting without draining")
            self.abort_event.set()
        self.stop_event.set()

    def run(self) -> RunSummary:
        self.start()
        assert self.detector is not None
        started = time.perf_counter()
        log.info("model at start: %s (%s)", self.detector.version, self.detector.path)
        self.models_used = [self.detector.version]
        if self.metrics is not None:
            self.metrics.set_model(self.detector.version)
        for stage in self.stages:
            stage.start()
        self.source_stage.start()
        if self.cfg.detector.watch_db_promotions_s and not self.once:
            self._watch_thread = threading.Thread(
                target=self._watch_promotions,
                args=(self.cfg.detector.watch_db_promotions_s,),
                name="watch-promotions",
                daemon=True,
            )
            self._watch_thread.start()
        try:
            while self.sink.is_alive():
                self.sink.join(timeout=0.5)
                if self.metrics is not None:
                    for name, queue in self.queues.items():
                        self.metrics.set_queue_depth(name, len(queue))
        except KeyboardInterrupt:
            self.request_stop()
            self.sink.join()
        self.stop_event.set()
        for thread in [self.source_stage, *self.stages]:
            thread.join(timeout=5)
        if self.sink.alarm is not None:
            self.sink.alarm.close()
        flushed = self.writer.close()
        not_stored = [_entry_key(entry) for entry in self.writer.held]
        if not_stored:
            log.error(
                "STORAGE FULL at exit: %d records not stored (their frames are read again on restart): %s",
                len(not_stored),
                not_stored[:20],
            )
        if not flushed:
            log.warning(
                "database still unreachable: results wait in %s for the next start", self.writer.spool.path
            )
        self.engine.dispose()
        return RunSummary(
            source=self.source_name,
            model_version=self.detector.version,
            elapsed_s=time.perf_counter() - started,
            tally=self.sink.tally,
            spool_pending=not flushed,
            model_versions=tuple(self.models_used),
            not_stored=not_stored,
            anomalies=self.anomaly_stage.tally.to_dict(),
        )
