"""Which runtime scores a bundle's network: torch eager or ONNX Runtime, and on which device.

``auto`` picks, in this order: torch for families without an ONNX export (Faster R-CNN: torchvision's
detector has data-dependent control flow the exporter does not capture faithfully); on CUDA, ONNX Runtime
when it has the TensorRT provider, else torch (fp16 autocast; ORT's plain CUDA provider runs fp32); on CPU,
ONNX Runtime when it is installed (measured about twice torch eager's speed on 2 cores), else torch.
Both runtimes return the same raw boxes and scores, decoded and NMS'd by the same vectorised step.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger("steel.backend")

BackendName = Literal["auto", "torch", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class BackendChoice:
    name: Literal["torch", "onnxruntime"]
    reason: str


def ort_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def ort_providers() -> list[str]:
    if not ort_available():
        return []
    import onnxruntime as ort  # may be absent: auto then runs torch (ort_available)

    return list(ort.get_available_providers())


def choose_backend(requested: str, *, family: str, device_type: str) -> BackendChoice:
    """The backend to run, and why; a clear ValueError when the request cannot be met."""
    if requested not in BACKENDS:
        raise ValueError(f"backend: {requested!r} is not one of {', '.join(BACKENDS)}")
    if requested == "torch":
        return BackendChoice("torch", "requested")
    exportable = family == "yolo"
    if requested == "onnxruntime":
        if not exportable:
            raise ValueError(f"backend: onnxruntime runs the yolo family only, not {family!r} (use torch)")
        if not ort_available():
            raise ValueError("backend: onnxruntime is not installed (pip install onnxruntime)")
        if device_type == "cuda" and not set(GPU_PROVIDERS) & set(ort_providers()):
            raise ValueError("backend: onnxruntime has no CUDA/TensorRT provider here (onnxruntime-gpu)")
        return BackendChoice("onnxruntime", "requested")
    if not exportable:
        return BackendChoice("torch", f"auto: the {family} family has no ONNX export; torch runs it")
    if not ort_available():
        return BackendChoice("torch", "auto: onnxruntime is not installed")
    if device_type == "cuda":
        if "TensorrtExecutionProvider" in ort_providers():
            return BackendChoice("onnxruntime", "auto: CUDA with ONNX Runtime's TensorRT provider")
        return BackendChoice("torch", "auto: CUDA without ONNX Runtime's TensorRT provider; torch fp16")
    return BackendChoice("onnxruntime", "auto: CPU with ONNX Runtime installed")


def session_providers(device_type: str) -> list[str]:
    """ONNX Runtime providers for a device, best first (CPU last, as the fallback ORT requires)."""
    if device_type != "cuda":
        return ["CPUExecutionProvider"]
    available = ort_providers()
    return [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]


def tensorrt_options(path: Path, input_chw: tuple[int, int, int], max_batch: int) -> dict[str, str]:
    """fp16 engines for every batch size 1..max_batch (one optimisation profile, so a short batch does
    not rebuild the engine), cached beside the graph: built once per weights, not at every start."""
    shape = "x".join(str(v) for v in input_chw)
    return {
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(path.parent / f"{path.stem}.trt"),
        "trt_profile_min_shapes": f"images:1x{shape}",
        "trt_profile_opt_shapes": f"images:{max_batch}x{shape}",
        "trt_profile_max_shapes": f"images:{max_batch}x{shape}",
    }


class OrtRunner:
    """An ONNX Runtime session over an exported graph: float32 (B,C,S,S) in [0,1] -> raw boxes, scores."""

    def __init__(
        self,
        path: Path,
        *,
        device_type: str,
        threads: int | None,
        input_chw: tuple[int, int, int] = (1, 224, 224),
        max_batch: int = 32,
    ):
        import onnxruntime as ort  # may be absent: only an ONNX Runtime backend needs it

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning: in the daemon the other stages need the same cores.
        # bench_daemon.py on the shared 2-core machine: 19 tiles/s spinning vs 35-38 without (raw: 29-44).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.providers = session_providers(device_type)
        providers: list[str | tuple[str, dict[str, str]]] = list(self.providers)
        if "TensorrtExecutionProvider" in self.providers:
            providers[0] = ("TensorrtExecutionProvider", tensorrt_options(path, input_chw, max_batch))
        self.session = ort.InferenceSession(str(path), options, providers=providers)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.session.run(["boxes", "scores"], {"images": images})
        return boxes, scores
