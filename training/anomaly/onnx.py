"""The anomaly model's early backbone run by ONNX Runtime on CPU, as the detector is (``backends.py``).

The detector runs its ONNX export on CPU; torch ran the anomaly model's backbone stages about 4x slower
per FLOP there (``bench/bench_anomaly_variants.py``), which made the anomaly score cost more than the
detector. The stages are exported in memory when the model is loaded (a second or two; the graph is a
few hundred kB, so no file is cached) and run with the detector's session options.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.anomaly.features import EarlyBackbone
from training.backends import ort_available

FeatureRunner = Callable[[np.ndarray], np.ndarray]  # float32 (B, 1, S, S) in [0, 1] -> features or distances


class MahalanobisHead(nn.Module):
    """Backbone stages, then each patch's Mahalanobis distance in the same graph: with the precision
    ``P = L L^T`` (Cholesky), ``(f - mean)^T P (f - mean) = |L^T (f - mean)|^2``, a 1x1 convolution and a
    sum of squares. (B, 1, S, S) -> (B, S/8, S/8)."""

    mean: torch.Tensor  # buffers, named for the type checker (register_buffer sets them)
    whiten: torch.Tensor

    def __init__(self, extractor: EarlyBackbone, mean: torch.Tensor, precision: torch.Tensor):
        super().__init__()
        self.extractor = extractor.eval()
        lower = torch.linalg.cholesky(precision.double()).float()
        self.register_buffer("mean", mean.float().reshape(1, -1, 1, 1))
        self.register_buffer("whiten", lower.T.contiguous()[:, :, None, None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.distances(self.extractor(images))

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) features -> (B, h, w) distances."""
        out: torch.Tensor = F.conv2d(features - self.mean, self.whiten).pow(2).sum(1).clamp_min(0).sqrt()
        return out


def ort_runner(module: nn.Module, input_size: int, threads: int | None = None) -> FeatureRunner | None:
    """An ONNX Runtime session over ``module`` (float32 (B, 1, S, S) in [0, 1] in, one array out); None
    when onnxruntime is not installed."""
    run = ort_outputs_runner(module, input_size, threads, outputs=1)
    return None if run is None else (lambda images: run(images)[0])


def ort_outputs_runner(
    module: nn.Module, input_size: int, threads: int | None = None, *, outputs: int
) -> Callable[[np.ndarray], list[np.ndarray]] | None:
    """As :func:`ort_runner` for a module that returns ``outputs`` tensors (a tuple when more than one),
    each with the batch first; the runner returns them in order."""
    if not ort_available():
        return None
    import onnxruntime as ort  # may be absent (checked above): the torch backend does without it

    names = [f"out{i}" for i in range(outputs)]
    buffer = io.BytesIO()
    dummy = torch.zeros(1, 1, input_size, input_size)
    with warnings.catch_warnings():  # the traced shape test (stride 4 -> 8 pooling) is constant per size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module.eval(),
            (dummy,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects; stubs say paths
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=names,
            dynamic_axes={"images": {0: "batch"}} | {name: {0: "batch"} for name in names},
        )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the detector's session
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def run(images: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = session.run(names, {"images": images})
        return out

    return run
