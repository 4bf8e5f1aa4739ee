"""Track stage: one tracker per source; turns merged detections into new defects and re-sightings."""

from __future__ import annotations

from collections.abc import Iterable

from inspection.messages import FrameDetections
from inspection.results import FrameResult
from inspection.stages.base import Stage
from inspection.tracking import Tracker


class TrackStage(Stage):
    accepts = (FrameDetections,)

    def __init__(self, *args, class_names: list[str], enabled: bool, tracker_options: dict, **kwargs):
        super().__init__("track", *args, **kwargs)
        self.class_names = class_names
        self.enabled = enabled
        self.options = tracker_options
        self.trackers: dict[str, Tracker] = {}

    def resume(self, source: str, defects) -> int:
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
