"""Merge stage: tile detections -> one set of boxes per frame, joined across tile borders."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Literal

from inspection.messages import FrameDetections, TileDetections
from inspection.metrics import DaemonMetrics
from inspection.queues import BoundedQueue
from inspection.stages.base import Stage
from inspection.tiling import merge_tile_detections


class MergeStage(Stage[TileDetections]):
    accepts = (TileDetections,)

    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: BoundedQueue,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        method: Literal["nms", "wbf"],
        iou_threshold: float,
    ) -> None:
        super().__init__("merge", inbox, outbox, abort=abort, metrics=metrics)
        self.method = method
        self.iou_threshold = iou_threshold

    def handle(self, msg: TileDetections) -> Iterable[FrameDetections]:
        frame = msg.frame
        merged = merge_tile_detections(
            list(msg.per_tile),
            list(msg.grid),
            msg.tile_hw,
            method=self.method,
            iou_threshold=self.iou_threshold,
            frame_hw=(frame.height, frame.width),
        )
        scale = frame.meta.get("preprocess_scale_xy")
        if scale is not None:  # back to the source frame's pixels
            merged = merged.scaled(*scale)
        return [
            FrameDetections(
                frame=frame, detections=merged, model_version=msg.model_version, latency_ms=msg.detect_ms
            )
        ]
