"""Track stage: one tracker per source; turns merged detections into new defects and re-sightings."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from inspection.messages import FrameDetections, FrameResult
from inspection.metrics import DaemonMetrics
from inspection.queues import BoundedQueue
from inspection.stages.base import Stage
from inspection.storage.tracks import OpenTrack
from inspection.tracking import Tracker


@dataclass(frozen=True)
class TrackerOptions:
    """How a tracker matches a detection to an open track (see :class:`~inspection.tracking.Tracker`)."""

    iou_threshold: float
    hash_iou_threshold: float
    max_hamming: int


class TrackStage(Stage[FrameDetections]):
    accepts = (FrameDetections,)

    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: BoundedQueue,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        class_names: list[str],
        enabled: bool,
        tracker_options: TrackerOptions,
    ) -> None:
        super().__init__("track", inbox, outbox, abort=abort, metrics=metrics)
        self.class_names = class_names
        self.enabled = enabled
        self.options = asdict(tracker_options)
        self.trackers: dict[str, Tracker] = {}

    def resume(self, source: str, defects: Sequence[OpenTrack]) -> int:
        """Reopen the tracks a previous run left open on ``source`` (see :meth:`Tracker.resume`)."""
        tracker = self.trackers.setdefault(source, Tracker(class_names=self.class_names, **self.options))
        return tracker.resume(defects)

    def handle(self, msg: FrameDetections) -> Iterable[FrameResult]:
        frame = msg.frame
        tracker = self.trackers.get(frame.source)
        if tracker is None:
            tracker = self.trackers[frame.source] = Tracker(class_names=self.class_names, **self.options)
        if not self.enabled:
            tracker.tracks.clear()
        new, again = tracker.update(frame, msg.detections)
        return [
            FrameResult(
                frame=frame,
                detections=msg.detections,
                new_defects=tuple(new),
                seen_again=tuple(again),
                model_version=msg.model_version,
                detect_ms=msg.latency_ms,
            )
        ]
