"""Preprocess stage: the configured OpenCV ops (flat-field, CLAHE, blur, resize...) on each frame."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np

from inspection.messages import Frame
from inspection.metrics import DaemonMetrics
from inspection.queues import BoundedQueue
from inspection.stages.base import Stage


class PreprocessStage(Stage[Frame]):
    def __init__(
        self,
        inbox: BoundedQueue,
        outbox: BoundedQueue,
        *,
        abort: threading.Event,
        metrics: DaemonMetrics | None = None,
        op: Callable[[np.ndarray], np.ndarray],
        identity: bool,
    ) -> None:
        super().__init__("preprocess", inbox, outbox, abort=abort, metrics=metrics)
        self.op = op
        self.identity = identity

    def handle(self, msg: Frame) -> Iterable[Frame]:
        if self.identity:
            return [msg]
        image = self.op(msg.image)
        if image.shape[:2] != msg.image.shape[:2]:
            sy, sx = msg.image.shape[0] / image.shape[0], msg.image.shape[1] / image.shape[1]
            return [msg.with_image(image, preprocess_scale_xy=(sx, sy))]
        return [msg.with_image(image)]
