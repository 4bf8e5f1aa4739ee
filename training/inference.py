"""Scoring images with a model bundle: the one place that turns uint8 pixels into model input and
model output into :class:`~datasets.detections.Detections` in source-image pixels.

Used by ``steel predict``/``steel eval`` and by the inspection daemon's detect stage, so the resize
and channel handling are identical to training (cv2 bilinear to ``size x size``, pixel / 255).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from datasets.detections import Detections
from training.bundle import Bundle, load_bundle


def resolve_device(kind: str = "auto") -> torch.device:
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(kind)


def to_model_input(image: np.ndarray, *, size: int, channels: int) -> np.ndarray:
    """uint8 (H,W) or (H,W,3) -> uint8 (C,size,size) with the model's channel count."""
    if image.ndim == 3 and channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.shape[2] == 3 else image[..., 0]
    elif image.ndim == 2 and channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[0] != size or image.shape[1] != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return image[None] if image.ndim == 2 else np.ascontiguousarray(image.transpose(2, 0, 1))


class Predictor:
    """Batched inference with a bundle: ``inference_mode``, fp16 autocast and pinned, non-blocking
    host-to-device copies on CUDA; float32 on CPU."""

    def __init__(
        self,
        bundle: Bundle | str,
        *,
        device: str = "auto",
        score_threshold: float | None = None,
        batch_size: int = 32,
    ):
        self.device = resolve_device(device)
        self.bundle = load_bundle(bundle, device=self.device) if isinstance(bundle, str) else bundle
        self.bundle.model.to(self.device).eval()
        self.size = self.bundle.image_size
        self.channels = self.bundle.in_channels
        self.score_threshold = self.bundle.score_threshold if score_threshold is None else score_threshold
        # (C,) threshold per class: the bundle's operating point, unless a threshold was given (it wins).
        self.class_thresholds = self.bundle.class_thresholds(score_threshold)
        self.batch_size = batch_size
        self.use_amp = self.device.type == "cuda"

    @property
    def class_names(self) -> list[str]:
        return self.bundle.class_names

    @property
    def version(self) -> str:
        return self.bundle.version

    def warmup(self, batches: int = 2) -> None:
        """Run dummy batches so the first real frame does not pay for allocator/kernel set-up."""
        dummy = [np.zeros((self.size, self.size), np.uint8)] * min(self.batch_size, 4)
        for _ in range(batches):
            self(dummy)

    def _tensor(self, batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(batch)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.float().div_(255.0)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections per image, boxes in each image's own pixels, scores at or above their class's
        threshold (``class_thresholds``)."""
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            batch = np.stack([to_model_input(im, size=self.size, channels=self.channels) for im in chunk])
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
                outputs = self.bundle.model(self._tensor(batch))
            for image, out in zip(chunk, outputs, strict=True):
                sx, sy = image.shape[1] / self.size, image.shape[0] / self.size
                det = Detections(
                    out["boxes"].float().cpu().numpy(),
                    out["scores"].float().cpu().numpy(),
                    out["labels"].cpu().numpy(),
                )
                det = det.scaled(sx, sy)
                results.append(det[det.scores >= self.class_thresholds[det.class_ids]])
        return results


def read_image(path: str) -> np.ndarray:
    """uint8 image as stored (gray or BGR); a clear error naming the file when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ValueError(f"{path}: cannot decode image")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
