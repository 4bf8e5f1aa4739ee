"""The inspection daemon: builds the pipeline from the config, runs it, drains it on shutdown.

    source -> preprocess -> tile -> batch -> detect -> merge -> track -> sink
      (thread)   (thread)     (thread) (thread)  (thread)  (thread)  (thread) (thread)

Each arrow is a :class:`~inspection.queues.BoundedQueue`. Shutdown (SIGTERM/SIGINT) stops the
source only; every frame already read flows through and is committed, then the stages exit in
pipeline order. A second signal aborts at once. SIGHUP (or a promotion recorded in the database)
reloads the model between two batches.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspection.config import InspectionConfig
from inspection.detector import TileDetector
from inspection.messages import FailedFrame, Frame
from inspection.queues import END, BoundedQueue
from inspection.stages.anomaly import ANOMALY_CLASS, AnomalyStage, resolve_anomaly_model
from inspection.stages.batch import BatchStage
from inspection.stages.detect import DetectStage
from inspection.stages.merge import MergeStage
from inspection.stages.preprocess import PreprocessStage
from inspection.stages.sink import Geometry, SinkStage
from inspection.stages.tile import TileStage
from inspection.stages.track import TrackStage

log = logging.getLogger("steel.daemon")

STAGE_ORDER = ("preprocess", "tile", "batch", "detect", "merge", "anomaly", "track", "sink")


@dataclass
class RunSummary:
    source: str
    model_version: str
    elapsed_s: float
    tally: Any
    spool_pending: bool = False  # results left in the spool (database unreachable at exit)
    anomalies: dict[str, Any] | None = None  # the anomaly stage's figures (scores, anomaly defects)

    def to_dict(self) -> dict[str, Any]:
        t = self.tally
        lat = np.asarray(t.latencies_ms, dtype=np.float64)
        return {
            "source": self.source,
            "model_version": self.model_version,
            "frames": t.frames,
            "frames_failed": t.frames_failed,
            "frames_dropped": t.frames_dropped,
            "frames_already_stored": t.duplicates,
            "spooled": t.spooled,
            "spool_pending": self.spool_pending,
            "source_gaps": t.gaps,
            "defects": t.defects,
            "per_class": dict(sorted(t.per_class.items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "frames_per_s": round(t.frames / self.elapsed_s, 3) if self.elapsed_s > 0 else None,
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
            "failures": t.failures[:50],
            "anomalies": self.anomalies,
        }


class SourceStage(threading.Thread):
    """Reads the source and feeds the pipeline; skips frames the database already holds."""

    def __init__(self, source, outbox: BoundedQueue, *, skip, stop: threading.Event, abort: threading.Event):
        super().__init__(name="stage-source", daemon=True)
        self.source = source
        self.outbox = outbox
        self.skip = skip
        self.stop = stop
        self.abort = abort
        self.heartbeat = time.monotonic()
        self.error: BaseException | None = None
        self.read = 0

    def run(self) -> None:
        try:
            for event in self.source:
                self.heartbeat = time.monotonic()
                if self.stop.is_set():
                    # What a source yields once stopped is a by-product of stopping (a line-scan frame cut
                    # short, keyed like the full frame): not stored, so a restart reads it whole.
                    break
                if isinstance(event, Frame | FailedFrame) and self.skip(event.seq):
                    continue
                self.read += 1
                if not self.outbox.put(event, abort=self.abort):
                    break
                if self.stop.is_set():
                    break
        except Exception as exc:  # a source that gives up ends the stream; what was read is kept
            log.exception("source %s stopped", getattr(self.source, "name", "?"))
            self.error = exc
        finally:
            self.source.close()
            self.outbox.put(END)


class Daemon:
    def __init__(
        self,
        cfg: InspectionConfig,
        *,
        once: bool = False,
        model: str | None = None,
        metrics: Any = None,
        source_options: dict[str, Any] | None = None,
    ):
        from inspection.storage.db import make_engine, upgrade
        from inspection.storage.repository import Repository
        from inspection.storage.spool import ResilientWriter

        self.cfg = cfg
        self.once = once
        self.metrics = metrics
        self.stop_event = threading.Event()  # stop reading; drain
        self.abort_event = threading.Event()  # stop now
        self.output_dir = Path(cfg.output.dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)

        self.engine = make_engine(cfg.db)
        upgrade(self.engine)
        self.repository = Repository(self.engine)
        self.writer = ResilientWriter(self.repository, self.output_dir / "spool.jsonl")
        self.writer.flush()  # results a previous run left in the spool go first

        model_path = model or self._model_from_db() or cfg.detector.model
        self.detector = TileDetector(
            model_path,
            device=cfg.detector.device,
            batch_size=cfg.detector.batch_tiles,
            score_threshold=cfg.detector.score_threshold,
            threads=cfg.detector.threads,
        )
        self._register_model(model_path)

        from inspection.sources import open_source

        options = {"stop": self.stop_event, **(source_options or {})}
        if cfg.source.startswith("folder:"):
            options.setdefault("follow", not once)
        self.source = open_source(cfg.source, **options)
        self.source_name = self.source.name
        done = self.repository.processed_seqs(self.source_name)
        self.skipped_at_start = len(done)

        self._build_pipeline(skip=done.__contains__)
        if done and cfg.tracking.enabled:
            self._resume_tracks()
        self._watch_thread: threading.Thread | None = None

    def _resume_tracks(self, frames: int = 2) -> None:
        """After a restart, reopen the tracks of the defects the last stored frames hold, so a defect in
        the overlap between the last stored frame and the next one is not stored a second time."""
        from sqlalchemy import select

        from inspection.storage.schema import Defect as DefectRow
        from inspection.storage.schema import Frame as FrameRow

        with self.repository.transaction() as session:
            last = select(FrameRow.id).where(FrameRow.source == self.source_name)
            last = last.order_by(FrameRow.seq.desc()).limit(frames)  # the (source, seq) index
            rows = session.execute(
                select(
                    DefectRow.track_id,
                    DefectRow.class_name,
                    DefectRow.sx1,
                    DefectRow.sy1,
                    DefectRow.sx2,
                    DefectRow.sy2,
                    DefectRow.last_frame_seq,
                )
                .where(DefectRow.frame_id.in_(last.scalar_subquery()), DefectRow.sx1.is_not(None))
                .order_by(DefectRow.id)
            ).all()
        track_stage = next(s for s in self.stages if isinstance(s, TrackStage))
        reopened = track_stage.resume(
            self.source_name, [(r[0], r[1], r[2:6], r[6] if r[6] is not None else -1) for r in rows]
        )
        if reopened:
            log.info("resumed %d open defect tracks of %s", reopened, self.source_name)

    # -- model versions --------------------------------------------------------------------------
    def _model_from_db(self) -> str | None:
        active = self.repository.active_model()
        if active is not None and active.path and Path(active.path).is_dir():
            return active.path
        return None

    def _register_model(self, path: str) -> None:
        self.repository.register_model_version(self.detector.manifest, path)
        active = self.repository.active_model()
        if active is None:
            self.repository.activate_model(self.detector.version)

    def reload_model(self, path: str | None = None) -> bool:
        ok = self.detector.reload(path)
        if not ok:
            return False
        if self.metrics is not None:
            self.metrics.set_model(self.detector.version)
        try:  # frames name the new version from now on: give it its manifest, not a placeholder row
            self.repository.register_model_version(self.detector.manifest, str(self.detector.path))
        except Exception as exc:  # database away: the frames' placeholder row is filled in later
            log.warning("could not register model %s: %s", self.detector.version, exc)
        return True

    def _watch_promotions(self, every_s: float) -> None:
        """A promotion recorded in the database (``steel models activate``) swaps the model in."""
        while not self.stop_event.wait(every_s):
            try:
                active = self.repository.active_model()
            except Exception as exc:  # database away: keep the running model
                log.debug("promotion check failed: %s", exc)
                continue
            if active is not None and active.version != self.detector.version and active.path:
                log.info("database promotes %s", active.version)
                self.reload_model(active.path)

    # -- pipeline --------------------------------------------------------------------------------
    def _build_pipeline(self, *, skip) -> None:
        from inspection.preprocess import build_preprocess

        cfg = self.cfg
        size, policy = cfg.queues.size, cfg.queues.policy
        q = {name: BoundedQueue(name, size, policy=policy) for name in STAGE_ORDER}
        self.queues = q
        common = {"abort": self.abort_event, "metrics": self.metrics}
        self.anomaly_stage = AnomalyStage(
            q["anomaly"],
            q["track"],
            cfg=cfg.anomaly,
            model_path=resolve_anomaly_model(cfg.anomaly, self.detector.path),
            tile_hw=cfg.tiling.tile_hw,
            overlap_hw=cfg.tiling.overlap_hw,
            anomaly_class_id=len(self.detector.class_names),
            class_names=list(self.detector.class_names),
            detector_manifest=lambda: self.detector.manifest,
            **common,
        )
        self.anomaly_stage.load()
        class_names = [*self.detector.class_names, ANOMALY_CLASS]
        self.sink = SinkStage(
            q["sink"],
            None,
            writer=self.writer,
            class_names=class_names,
            geometry=Geometry(cfg.mm_per_line, cfg.mm_per_px),
            line=cfg.line,
            coil=cfg.coil,
            output_dir=self.output_dir,
            save_crops=cfg.output.save_crops,
            save_frames=cfg.output.save_frames,
            save_raw=cfg.output.save_raw,
            live_every_s=cfg.output.live_every_s,
            alarm=self._build_alarms(),
            **common,
        )
        for queue in q.values():
            queue.on_drop = self.sink.on_drop
        self.source_stage = SourceStage(
            self.source, q["preprocess"], skip=skip, stop=self.stop_event, abort=self.abort_event
        )
        self.stages = [
            PreprocessStage(
                q["preprocess"],
                q["tile"],
                op=build_preprocess(cfg.preprocess),
                identity=not cfg.preprocess.ops,
                **common,
            ),
            TileStage(
                q["tile"], q["batch"], tile_hw=cfg.tiling.tile_hw, overlap_hw=cfg.tiling.overlap_hw, **common
            ),
            BatchStage(
                q["batch"],
                q["detect"],
                max_tiles=cfg.detector.batch_tiles,
                wait_ms=cfg.detector.batch_wait_ms,
                **common,
            ),
            DetectStage(q["detect"], q["merge"], detector=self.detector, **common),
            MergeStage(
                q["merge"],
                q["anomaly"],
                method=cfg.tiling.merge,
                iou_threshold=cfg.tiling.merge_iou,
                **common,
            ),
            self.anomaly_stage,
            TrackStage(
                q["track"],
                q["sink"],
                class_names=class_names,
                enabled=cfg.tracking.enabled,
                tracker_options={
                    "iou_threshold": cfg.tracking.iou_threshold,
                    "hash_iou_threshold": cfg.tracking.hash_iou_threshold,
                    "max_hamming": cfg.tracking.max_hamming,
                },
                **common,
            ),
            self.sink,
        ]

    def _build_alarms(self):
        if not self.cfg.alarms:
            return None
        from inspection.alarm_dispatch import AlarmDispatcher

        return AlarmDispatcher(
            self.cfg.alarms,
            repository_writer=self.writer,
            class_names=self.detector.class_names,
            metrics=self.metrics,
        )

    def health(self) -> dict[str, Any]:
        """The ``/health`` body: stage heartbeats against their budget, queue depths, spooling."""
        from inspection.health import health_report

        now = time.monotonic()
        beats = {s.stage_name: now - s.heartbeat for s in self.stages}
        beats["source"] = now - self.source_stage.heartbeat
        return health_report(
            stopping=self.stop_event.is_set(),
            heartbeat_ages_s=beats,
            budgets_s=self.cfg.health.stage_budget_s,
            queue_depths={name: len(queue) for name, queue in self.queues.items()},
            db_degraded=self.writer.degraded,
            model_version=self.detector.version,
        )

    # -- running ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if self.stop_event.is_set():
            log.warning("second stop request: aborting without draining")
            self.abort_event.set()
        self.stop_event.set()

    def run(self) -> RunSummary:
        started = time.perf_counter()
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
        for stage in [self.source_stage, *self.stages]:
            stage.join(timeout=5)
        if self.sink.alarm is not None:
            self.sink.alarm.close()
        flushed = self.writer.close()
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
            anomalies=self.anomaly_stage.tally.to_dict(),
        )
