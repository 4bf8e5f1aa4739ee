"""The model behind the detect stage, swappable while the line runs.

A new bundle is loaded (and warmed up) beside the running one; the swap is one reference assignment
under a lock between two batches, so no frame is scored half by one model and half by another, and
none is lost. A bundle that fails to load leaves the running model in place.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import torch

from datasets.detections import Detections
from training.inference import Predictor

log = logging.getLogger("steel.detector")


def threads_per_call(threads: int | None, workers: int) -> int | None:
    """Intra-op threads for each of ``workers`` concurrent model calls: ``threads`` when set, else the
    cores this process may use shared out (None with one worker: the runtime's own default)."""
    if threads or workers <= 1:
        return threads
    return max(1, len(os.sched_getaffinity(0)) // workers)


class TileDetector:
    def __init__(
        self,
        bundle_path: str | Path,
        *,
        device: str = "auto",
        batch_size: int = 32,
        score_threshold: float | None = None,
        threads: int | None = None,
        backend: str = "auto",
        int8: bool = False,
    ):
        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.batch_size = batch_size
        self.score_threshold = score_threshold
        self.backend = backend
        self.int8 = int8
        self.threads = threads
        self._lock = threading.Lock()
        self._points: dict[str, dict[str, float]] = {}  # version -> operating point, of every bundle run
        self._predictor = self._load(bundle_path)
        self.path = Path(bundle_path)

    def _load(self, path: str | Path) -> Predictor:
        predictor = Predictor(
            str(path),
            device=self.device,
            batch_size=self.batch_size,
            score_threshold=self.score_threshold,
            backend=self.backend,
            int8=self.int8,
            threads=self.threads,
        )
        predictor.warmup()
        self._points[predictor.version] = predictor.bundle.operating_point
        log.info("detector %s on %s (%s)", predictor.version, predictor.describe(), predictor.backend_reason)
        return predictor

    @property
    def version(self) -> str:
        return self._predictor.version

    @property
    def class_names(self) -> list[str]:
        return self._predictor.class_names

    def operating_point(self, version: str | None = None) -> dict[str, float]:
        """Score threshold per class (the reject rule's default) of the bundle ``version`` (a frame's
        ``model_version``: one scored just before a swap is judged by its own model's point), by default
        of the running one."""
        if version is not None and version in self._points:
            return self._points[version]
        return self._predictor.bundle.operating_point

    @property
    def backend_description(self) -> str:
        """What runs the model, e.g. ``onnxruntime fp32 [CPUExecutionProvider]``, and why it was picked."""
        return f"{self._predictor.describe()} ({self._predictor.backend_reason})"

    @property
    def manifest(self) -> dict:
        return self._predictor.bundle.manifest

    def reload(self, path: str | Path | None = None) -> bool:
        """Load ``path`` (default: the current path again, for SIGHUP after a file swap) and swap it in.
        Returns False, keeping the running model, when the new bundle cannot be loaded."""
        target = Path(path) if path else self.path
        try:
            predictor = self._load(target)
        except Exception as exc:
            log.error("model reload from %s failed, keeping %s: %s", target, self.version, exc)
            return False
        if predictor.class_names != self.class_names:
            log.error(
                "model reload from %s refused: classes %s differ from running %s",
                target,
                predictor.class_names,
                self.class_names,
            )
            return False
        with self._lock:
            old = self.version
            self._predictor, self.path = predictor, target
        log.info("model swapped: %s -> %s", old, predictor.version)
        return True

    def detect(self, tiles: np.ndarray) -> tuple[list[Detections], str]:
        """Detections per tile (tile pixels) and the version of the model that made them."""
        with self._lock:
            predictor = self._predictor
        return predictor(list(tiles)), predictor.version
