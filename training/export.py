"""Export a bundle's network to ONNX: raw boxes and class scores before NMS, so any runtime can apply
its own (or our) postprocess. YOLO only: torchvision's Faster R-CNN has data-dependent control flow
that the TorchScript exporter does not capture faithfully."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training.bundle import Bundle
from training.models.yolo.model import YOLO, as_yolo
from training.onnx_cache import cached_path, ensure_cached


class _RawYolo(nn.Module):
    def __init__(self, model: YOLO):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.raw(images)


def export_onnx(bundle: Bundle, out_path: str | Path, *, opset: int = 17) -> Path:
    """Write ``out_path`` with input ``images`` (B,C,S,S) float in [0,1] and outputs ``boxes`` (B,A,4)
    pixels and ``scores`` (B,A,C) probabilities; the batch axis is dynamic."""
    if bundle.model_config is None:  # an ensemble: its fusion runs in Python, after each member's NMS
        raise ValueError(f"--format onnx: {bundle.path} is an ensemble; export each member bundle instead")
    if bundle.model_config.family != "yolo":
        raise ValueError(
            f"--format onnx: export supports the yolo family, not {bundle.model_config.family!r}"
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _RawYolo(as_yolo(bundle.model).cpu()).eval()  # export restores the mode it found: keep it eval
    dummy = torch.zeros(1, bundle.in_channels, bundle.image_size, bundle.image_size)
    torch.onnx.export(
        wrapper,
        (dummy,),
        str(out_path),
        dynamo=False,
        opset_version=opset,
        input_names=["images"],
        output_names=["boxes", "scores"],
        dynamic_axes={"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}},
    )
    return out_path


def cached_onnx(bundle: Bundle, *, int8: bool = False) -> Path:
    """The bundle's fp32 export for its current weights, made on first use (see ``training.onnx_cache``).

    With ``int8``, the statically quantised export, which ``steel export --int8`` (or ``steel eval
    --backend onnxruntime --int8``) makes from calibration images; it is never made implicitly here."""
    if int8:
        path = cached_path(bundle, "int8")
        if not path.is_file():
            raise ValueError(
                f"{bundle.path}: no int8 export for these weights ({path.name}); make it with "
                f"`steel export --model {bundle.path} --int8 --data ANNOTATIONS --split SPLIT`"
            )
        return path
    return ensure_cached(bundle, lambda tmp: export_onnx(bundle, tmp), "fp32")
