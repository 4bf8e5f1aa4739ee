"""Versioned model bundles: ``weights.safetensors`` plus ``manifest.json``.

Safetensors holds tensors only, so loading a bundle never unpickles anything. The manifest carries what
a consumer needs to run the model (architecture config, classes, input size/channels, normalisation,
thresholds) and what an auditor needs to trust it (metrics, split hash, code and torch versions).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from training.config import ModelConfig
from training.line_figures import class_thresholds
from training.manifest import (
    BUNDLE_FORMAT,
    MANIFEST,
    BundleError,
    EnsembleManifest,
    Manifest,
    ModelManifest,
    parse_manifest,
    read_manifest,
    rewrite_manifest,
    validate_manifest,
)
from training.provenance import code_version
from training.registry import build_model

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST",
    "WEIGHTS",
    "Bundle",
    "BundleError",
    "code_version",
    "load_bundle",
    "read_manifest",
    "read_weights",
    "rewrite_manifest",
    "save_bundle",
    "sha256_file",
]

WEIGHTS = "weights.safetensors"
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol 2+ and torch.save's zip container


@dataclass
class Bundle:
    """A loaded bundle: its folder, validated manifest (``spec``; ``manifest`` is the same as raw JSON for
    the model registry), the model in eval mode and, for a single model, its architecture config."""

    path: Path
    manifest: dict[str, Any]
    model: nn.Module
    model_config: ModelConfig | None
    validated: Manifest | None = field(default=None, repr=False)

    @property
    def spec(self) -> Manifest:
        """The manifest as its pydantic model (validated on first use when built from a plain dict)."""
        if self.validated is None:
            self.validated = validate_manifest(self.path / MANIFEST, self.manifest)
        return self.validated

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def image_size(self) -> int:
        return self.spec.input.size

    @property
    def in_channels(self) -> int:
        return self.spec.input.channels

    @property
    def score_threshold(self) -> float:
        return self.spec.thresholds.score

    @property
    def per_class_thresholds(self) -> dict[str, float]:
        """The calibrated operating point (class name -> score); empty when the bundle has none."""
        return dict(self.spec.thresholds.per_class or {})

    @property
    def operating_point(self) -> dict[str, float]:
        """Score threshold of every class: calibrated where the manifest has one, else ``score``."""
        names = self.class_names
        return dict(zip(names, self.class_thresholds(None).tolist(), strict=True))

    def class_thresholds(self, override: float | None) -> np.ndarray:
        """``(C,)`` thresholds: ``override`` for every class when given, else the operating point."""
        if override is not None:
            return class_thresholds(self.class_names, None, override)
        return class_thresholds(self.class_names, self.per_class_thresholds, self.score_threshold)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(
    out_dir: str | Path,
    model: nn.Module,
    *,
    model_config: ModelConfig,
    class_names: list[str],
    version: str,
    score_threshold: float,
    metrics: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/weights.safetensors`` and ``out_dir/manifest.json``; returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    weights_path = out_dir / WEIGHTS
    save_file(state, str(weights_path))
    nms_iou = model_config.yolo.nms_iou if model_config.family == "yolo" else None
    manifest = {
        "format": BUNDLE_FORMAT,
        "kind": "model",
        "name": out_dir.name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": model_config.model_dump(mode="json"),
        "class_names": list(class_names),
        "input": {
            "size": model_config.image_size,
            "channels": model_config.in_channels,
            "layout": "NCHW",
            "normalisation": "pixel / 255 (the model normalises internally if it needs to)",
            "resize": "bilinear to size x size",
        },
        "thresholds": {"score": score_threshold, "nms_iou": nms_iou},
        "metrics": metrics or {},
        "split": split or {},
        "training": training or {},
        "code_version": code_version(),
        "torch_version": torch.__version__,
        "weights": {
            "file": WEIGHTS,
            "sha256": sha256_file(weights_path),
            "tensors": len(state),
            "parameters": int(sum(v.numel() for v in state.values())),
        },
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _weights_file(bundle_dir: Path, spec: ModelManifest) -> Path:
    weights_path = bundle_dir / spec.weights.file
    if weights_path.is_dir():
        raise BundleError(f"{weights_path}: is a directory, not the weights file (manifest weights.file)")
    if not weights_path.is_file():
        raise BundleError(f"{weights_path}: weights file named by the manifest is missing (weights.file)")
    digest = sha256_file(weights_path)
    if digest != spec.weights.sha256:
        raise BundleError(
            f"{weights_path}: sha256 {digest[:12]}… does not match manifest weights.sha256 "
            f"{spec.weights.sha256[:12]}…"
        )
    return weights_path


def _read_tensors(weights_path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; anything else (a pickle above all) is refused unread."""
    with open(weights_path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(PICKLE_MAGIC):
        raise BundleError(
            f"{weights_path}: is a pickle/torch.save file, not safetensors (weights.file); "
            "bundles hold safetensors only and nothing is ever unpickled"
        )
    try:
        state = load_file(str(weights_path))
    except Exception as exc:  # SafetensorError, OSError, ...: the library's own types vary by version
        raise BundleError(f"{weights_path}: not a readable safetensors file (weights.file): {exc}") from None
    bad = [name for name, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise BundleError(f"{weights_path}: {len(bad)} tensors hold NaN or infinite values (e.g. {bad[0]})")
    return state


def _check_dtype(weights_path: Path, state: dict[str, torch.Tensor], dtype: str) -> None:
    """Every floating tensor is stored as the manifest's ``weights.dtype`` says."""
    expected = getattr(torch, dtype)
    other = [name for name, t in state.items() if t.is_floating_point() and t.dtype != expected]
    if other:
        found = str(state[other[0]].dtype).removeprefix("torch.")
        raise BundleError(
            f"{weights_path}: {len(other)} tensors are {found}, manifest weights.dtype says {dtype} "
            f"(e.g. {other[0]})"
        )


def read_weights(bundle_dir: Path, spec: ModelManifest) -> dict[str, torch.Tensor]:
    """The bundle's tensors, after checking the file's hash, format, finiteness and ``weights.dtype``."""
    weights_path = _weights_file(bundle_dir, spec)
    state = _read_tensors(weights_path)
    _check_dtype(weights_path, state, spec.weights.dtype)
    return state


def _build(bundle_dir: Path, spec: ModelManifest) -> tuple[nn.Module, ModelConfig]:
    # The bundle's own weights are loaded next; a fine-tuning start file named in the config is not needed.
    cfg = spec.architecture
    cfg = cfg.model_copy(
        update={
            "yolo": cfg.yolo.model_copy(update={"weights": None}),
            "faster_rcnn": cfg.faster_rcnn.model_copy(update={"weights": None, "weights_backbone": None}),
        }
    )
    try:
        return build_model(cfg, num_classes=len(spec.class_names)), cfg
    except Exception as exc:  # a valid-looking config the model code still rejects
        raise BundleError(
            f"{bundle_dir / MANIFEST}: field architecture: cannot build the model: {exc}"
        ) from None


def load_bundle(path: str | Path, *, device: str | torch.device = "cpu") -> Bundle:
    """Build the model the manifest describes and load its weights; any disagreement is a BundleError.

    An ``ensemble`` manifest loads its member bundles and wraps them (:mod:`training.ensemble`).
    """
    path = Path(path)
    bundle_dir = path if path.is_dir() else path.parent
    spec, raw = parse_manifest(bundle_dir / MANIFEST)
    if isinstance(spec, EnsembleManifest):
        from training.ensemble import load_ensemble  # ensemble_boxes is slow to import: ensembles only

        ensemble = load_ensemble(bundle_dir, spec, device=device, load_member=load_bundle)
        return Bundle(path=bundle_dir, manifest=raw, model=ensemble, model_config=None, validated=spec)
    model, model_config = _build(bundle_dir, spec)
    state = read_weights(bundle_dir, spec)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    if missing or unexpected or wrong_shape:
        raise BundleError(
            f"{bundle_dir}: manifest architecture and weights disagree: "
            f"{len(missing)} tensors missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]}), {len(wrong_shape)} of another shape (e.g. {wrong_shape[:2]})"
        )
    model.load_state_dict(state)
    model.to(device).eval()
    return Bundle(path=bundle_dir, manifest=raw, model=model, model_config=model_config, validated=spec)
