"""fp16 copies of model bundles: half the bytes on disk, the same network once loaded.

Training writes fp32 weights. Issue 12 caps a bundle at 40 MB and ``models/`` at 80 MB, and a from-scratch
Faster R-CNN (19 M parameters, 76 MB in fp32) or several ensemble members do not fit. The model is still
built in fp32 and ``load_state_dict`` casts each stored tensor into it, so inference, the ONNX export and
quantisation run as before; what changes is each weight's fp16 rounding, which ``steel eval`` measures.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch
from pydantic import JsonValue
from safetensors.torch import save_file

from training.bundle import (
    MANIFEST,
    WEIGHTS,
    BundleError,
    read_weights,
    rewrite_manifest,
    sha256_file,
)
from training.manifest import ModelManifest, parse_manifest

FP16_SUFFIX = "-fp16"
FP16_MAX = float(torch.finfo(torch.float16).max)


def half_state(state: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Floating tensors as fp16 (integer ones, e.g. batch-norm counters, unchanged).

    Raises:
        BundleError: a weight beyond fp16's range (65,504) would become infinite; named, nothing written.
    """
    too_large = [k for k, t in state.items() if t.is_floating_point() and t.abs().max() > FP16_MAX]
    if too_large:
        raise BundleError(f"{source}: {too_large[0]} holds values beyond fp16's range; keep this bundle fp32")
    return {k: (t.half() if t.is_floating_point() else t).contiguous() for k, t in state.items()}


def half_precision_copy(source: str | Path, out: str | Path) -> Path:
    """Write ``out``: ``source``'s bundle with fp16 weights and version ``<version>-fp16``.

    Everything else in the folder (anomaly model, curves, operating point) is copied unchanged; cached ONNX
    exports are not (they belong to the fp32 weights' hash). The manifest's ``training.fp16_of`` records
    the source version and weights hash.

    Raises:
        BundleError: ``source`` is not a single-model bundle, is already fp16, or ``out`` exists.
    """
    source, out = Path(source), Path(out)
    spec, raw = parse_manifest(source / MANIFEST)
    if not isinstance(spec, ModelManifest):
        raise BundleError(f"{source / MANIFEST}: kind {spec.kind!r}: only a model bundle has weights")
    if spec.weights.dtype == "float16":
        raise BundleError(f"{source / MANIFEST}: weights.dtype is already float16")
    if out.exists():
        raise BundleError(f"{out}: already exists; choose a new folder for the fp16 bundle")
    state = half_state(read_weights(source, spec), source)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("*.onnx", WEIGHTS, MANIFEST))
    save_file(state, str(staging / WEIGHTS))
    shutil.copymode(source / spec.weights.file, staging / WEIGHTS)  # safetensors writes 0600
    rewrite_manifest(staging, _fp16_manifest(raw, spec, staging / WEIGHTS, out.name))
    staging.rename(out)  # the folder appears whole or not at all
    return out


def _fp16_manifest(
    raw: dict[str, JsonValue], spec: ModelManifest, weights: Path, name: str
) -> dict[str, JsonValue]:
    manifest = copy.deepcopy(raw)
    manifest["name"] = name
    manifest["version"] = f"{spec.version}{FP16_SUFFIX}"
    manifest["weights"] = {
        **spec.weights.model_dump(mode="json"),
        "sha256": sha256_file(weights),
        "dtype": "float16",
    }
    training = dict(spec.training)
    training["fp16_of"] = {"version": spec.version, "weights_sha256": spec.weights.sha256}
    manifest["training"] = training
    return manifest
