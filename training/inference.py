"""Scoring images with a model bundle: the one place that turns uint8 pixels into model input and
model output into :class:`~datasets.detections.Detections` in source-image pixels.

Used by ``steel predict``/``steel eval`` and by the inspection daemon's detect stage, so the resize
and channel handling are identical to training (cv2 bilinear to ``size x size``, pixel / 255).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from datasets.detections import Detections
from training.backends import OrtRunner, choose_backend
from training.bundle import Bundle, load_bundle
from training.export import cached_onnx
from training.models.yolo.model import as_yolo
from training.models.yolo.postprocess import postprocess_arrays

log = logging.getLogger("steel.predict")


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
    """Batched inference with a bundle on the backend :func:`~training.backends.choose_backend` picks.

    torch: ``inference_mode``, fp16 autocast and pinned, non-blocking host-to-device copies on CUDA;
    float32 on CPU. onnxruntime: the bundle's cached ONNX export (fp32, or the int8 one with ``int8``).
    YOLO's box decoding and NMS run in one vectorised step after either network, at the predictor's own
    score threshold (boxes below it cannot suppress boxes above it, so the result is the same as
    thresholding afterwards, and NMS has far fewer candidates).
    """

    def __init__(
        self,
        bundle: Bundle | str,
        *,
        device: str = "auto",
        score_threshold: float | None = None,
        batch_size: int = 32,
        backend: str = "auto",
        int8: bool = False,
        threads: int | None = None,
    ):
        self.device = resolve_device(device)
        self.bundle = load_bundle(bundle, device=self.device) if isinstance(bundle, str) else bundle
        self.bundle.model.to(self.device).eval()
        self.size = self.bundle.image_size
        self.channels = self.bundle.in_channels
        # (C,) threshold per class: the bundle's operating point, unless a threshold was given (it wins).
        self.class_thresholds = self.bundle.class_thresholds(score_threshold)
        # The lowest of them: what the model's own candidate filter may drop without changing the result.
        self.score_threshold = float(self.class_thresholds.min())
        self.batch_size = batch_size
        self.use_amp = self.device.type == "cuda"
        # An ensemble bundle has no single architecture: its members run in torch behind one contract.
        family = self.bundle.model_config.family if self.bundle.model_config is not None else "ensemble"
        self.family = family
        choice = choose_backend(backend, family=family, device_type=self.device.type)
        if int8 and choice.name != "onnxruntime":
            raise ValueError(
                f"int8: runs on the onnxruntime backend only (this bundle runs on {choice.name})"
            )
        self.backend, self.backend_reason = choice.name, choice.reason
        self.int8 = int8 and choice.name == "onnxruntime"
        self._ort: OrtRunner | None = None
        if choice.name == "onnxruntime":
            try:
                self._ort = self._ort_runner(int8=int8, threads=threads)
            except Exception as exc:
                if backend != "auto" or int8:
                    raise
                # auto never stops a line over the export: torch runs the same network.
                log.warning("onnxruntime unavailable for %s, torch runs it: %s", self.bundle.version, exc)
                self.backend, self.backend_reason = "torch", f"auto: onnxruntime failed ({exc})"
        log.info("%s runs on %s (%s)", self.bundle.version, self.describe(), self.backend_reason)

    def _ort_runner(self, *, int8: bool, threads: int | None) -> OrtRunner:
        return OrtRunner(
            cached_onnx(self.bundle, int8=int8),
            device_type=self.device.type,
            threads=threads,
            input_chw=(self.channels, self.size, self.size),
            max_batch=self.batch_size,
        )

    def describe(self) -> str:
        """The backend in words, e.g. ``onnxruntime int8 [CPUExecutionProvider]`` or ``torch cpu``."""
        if self._ort is not None:
            return f"onnxruntime {'int8' if self.int8 else 'fp32'} [{', '.join(self._ort.providers)}]"
        return f"torch {self.device.type}{' fp16' if self.use_amp else ''}"

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
    def _raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """YOLO's decoded boxes (B,A,4) and probabilities (B,A,C) from either backend, on the host."""
        if self._ort is not None:
            return self._ort(batch.astype(np.float32) / np.float32(255.0))  # as torch's div_: same rounding
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            boxes, scores = as_yolo(self.bundle.model).raw(self._tensor(batch))
        return boxes.float().cpu().numpy(), scores.float().cpu().numpy()

    def _yolo(self, chunk: Sequence[np.ndarray], batch: np.ndarray) -> list[Detections]:
        assert self.bundle.model_config is not None and self.bundle.model_config.yolo is not None
        cfg = self.bundle.model_config.yolo
        # Candidates are kept when score > threshold; ``above`` keeps score >= threshold: step just below.
        threshold = max(cfg.score_threshold, float(np.nextafter(np.float32(self.score_threshold), -1)))
        boxes, scores = self._raw(batch)
        counts, xyxy, kept_scores, labels = postprocess_arrays(
            boxes,
            scores,
            image_hw=(self.size, self.size),
            conf_threshold=threshold,
            iou_threshold=cfg.nms_iou,
            max_detections=cfg.max_detections,
        )
        image_of = np.repeat(np.arange(len(chunk)), counts)
        keep = kept_scores >= self.class_thresholds[labels]  # each class at its own operating point
        image_of, xyxy, kept_scores, labels = image_of[keep], xyxy[keep], kept_scores[keep], labels[keep]
        counts = np.bincount(image_of, minlength=len(chunk))
        hw = np.array([im.shape[:2] for im in chunk], dtype=np.float32)  # (B, 2) rows, cols
        xyxy = xyxy * (np.stack([hw[:, 1], hw[:, 0]] * 2, axis=1) / np.float32(self.size))[image_of]
        bounds = np.cumsum(counts)[:-1]
        return [
            Detections(b, s, c)
            for b, s, c in zip(
                np.split(xyxy, bounds), np.split(kept_scores, bounds), np.split(labels, bounds), strict=True
            )
        ]

    def _torch_forward(self, chunk: Sequence[np.ndarray], batch: np.ndarray) -> list[Detections]:
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            outputs = self.bundle.model(self._tensor(batch))
        results = []
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

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections per image, boxes in each image's own pixels, scores at or above their class's
        threshold (``class_thresholds``)."""
        results: list[Detections] = []
        yolo = self.family == "yolo"
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            batch = np.stack([to_model_input(im, size=self.size, channels=self.channels) for im in chunk])
            results.extend(self._yolo(chunk, batch) if yolo else self._torch_forward(chunk, batch))
        return results


def read_image(path: str) -> np.ndarray:
    """uint8 image as stored (gray or BGR); a clear error naming the file when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ValueError(f"{path}: cannot decode image")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
