"""Anomaly models on disk, pickle-free: ``anomaly.safetensors`` (tensors) + ``anomaly.json`` (the rest).

The folder can stand alone or sit inside a detector bundle (``<bundle>/anomaly/``), where the daemon and
``steel calibrate`` look for it. The threshold calibrated to a false-alarm budget is stored in the JSON.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from datasets.texture.settings import FeatureSettings
from training.anomaly.autoencoder import AutoencoderScorer, ConvAutoencoder
from training.anomaly.features import EarlyBackbone
from training.anomaly.gaussian import FeatureGaussian
from training.anomaly.texture import GAUSSIAN_ARRAYS, GlcmMemory, ScoreScale, TextureFusedScorer
from training.anomaly.window_mean import WindowFusedScorer, WindowMeanMemory
from training.bundle import sha256_file
from training.models.yolo.backbone import BackboneNeck
from training.models.yolo.model import SCALES

ANOMALY_FORMAT = "steel-anomaly/1"
ANOMALY_JSON = "anomaly.json"
ANOMALY_WEIGHTS = "anomaly.safetensors"
BUNDLE_SUBDIR = "anomaly"
KINDS = ("backbone-gaussian", "conv-autoencoder", "backbone-gaussian+glcm", "backbone-gaussian+window")

Scorer = FeatureGaussian | AutoencoderScorer | TextureFusedScorer | WindowFusedScorer


class AnomalyStoreError(ValueError):
    """An anomaly model folder is missing, malformed, or its JSON and tensors disagree."""


@dataclass
class AnomalyModel:
    path: Path
    manifest: dict[str, Any]
    scorer: Scorer

    @property
    def threshold(self) -> float | None:
        value = self.manifest.get("threshold", {}).get("score")
        return None if value is None else float(value)

    @property
    def detection_evidence(self) -> float | None:
        """The anomaly a detection's box must reach (``evidence_level``); None: no veto stored."""
        value = self.manifest.get("threshold", {}).get("detection_evidence")
        return None if value is None else float(value)


def save_anomaly(
    out_dir: str | Path,
    scorer: Scorer,
    *,
    version: str,
    extra: dict[str, Any],
) -> Path:
    """Write the scorer's tensors and a JSON manifest (``extra`` holds threshold, metrics, sources)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(scorer, FeatureGaussian):
        tensors, arch = _gaussian_state(scorer)
    elif isinstance(scorer, TextureFusedScorer):
        tensors, arch = _fused_state(scorer)
    elif isinstance(scorer, WindowFusedScorer):
        tensors, arch = _window_state(scorer)
    else:
        tensors = {
            f"autoencoder.{k}": v.detach().cpu().contiguous().clone()
            for k, v in scorer.model.state_dict().items()
        }
        arch = {"width": scorer.model.width}
    save_file(tensors, str(out_dir / ANOMALY_WEIGHTS))
    manifest = {
        "format": ANOMALY_FORMAT,
        "kind": scorer.kind,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": arch | extra.pop("architecture", {}),
        **extra,
        "weights": {"file": ANOMALY_WEIGHTS, "sha256": sha256_file(out_dir / ANOMALY_WEIGHTS)},
    }
    (out_dir / ANOMALY_JSON).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _gaussian_state(scorer: FeatureGaussian) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if scorer.mean is None or scorer.precision is None:
        raise AnomalyStoreError("FeatureGaussian is not fitted")
    tensors = {f"backbone.{k}": v for k, v in scorer.extractor.feature_state().items()}
    tensors |= {
        "gaussian.mean": scorer.mean.contiguous(),
        "gaussian.precision": scorer.precision.contiguous(),
    }
    arch = {
        "input_size": scorer.input_size,
        "feature_dims": int(scorer.mean.numel()),
        "last_stage": scorer.extractor.last_stage,
        "pool": scorer.extractor.pool,
    }
    return tensors, arch


def _fused_state(scorer: TextureFusedScorer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The Gaussian's state, the GLCM memory's arrays (float64) and both score scales (JSON)."""
    arrays = [getattr(scorer.glcm, name) for name in GAUSSIAN_ARRAYS]
    tensors, arch = _with_second_memory(
        scorer.gaussian, "glcm", arrays, scorer.backbone_scale, scorer.glcm_scale
    )
    arch["glcm"] = {
        "window_px": scorer.glcm.window_px,
        "step_px": scorer.glcm.step_px,
        "features": scorer.glcm.settings.model_dump(mode="json"),
    }
    return tensors, arch


def _window_state(scorer: WindowFusedScorer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The Gaussian's state, the window memory's arrays (float64) and both score scales (JSON)."""
    w = scorer.window
    arrays = [w.centre, w.scale, w.location, w.precision]
    tensors, arch = _with_second_memory(
        scorer.gaussian, "window", arrays, scorer.backbone_scale, scorer.window_scale
    )
    arch["window"] = {"cells": w.cells, "step": w.step}
    return tensors, arch


def _with_second_memory(
    gaussian: FeatureGaussian,
    prefix: str,
    arrays: list[np.ndarray | None],
    backbone_scale: ScoreScale | None,
    scale: ScoreScale | None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The Gaussian's state plus a second memory's arrays as ``<prefix>.<name>`` tensors, and both score
    scales as ``architecture.fusion`` (``backbone_*``, ``<prefix>_*``)."""
    if any(a is None for a in arrays) or backbone_scale is None or scale is None:
        raise AnomalyStoreError(f"the {prefix} fusion is not fitted")
    tensors, arch = _gaussian_state(gaussian)
    for name, array in zip(GAUSSIAN_ARRAYS, arrays, strict=True):
        tensors[f"{prefix}.{name}"] = torch.from_numpy(np.ascontiguousarray(array))
    arch["fusion"] = {
        "backbone_mean": backbone_scale.mean,
        "backbone_std": backbone_scale.std,
        f"{prefix}_mean": scale.mean,
        f"{prefix}_std": scale.std,
    }
    return tensors, arch


def find_anomaly_dir(path: str | Path) -> Path | None:
    """The anomaly folder at ``path`` or inside the bundle at ``path``; None when there is none."""
    path = Path(path)
    for candidate in (path, path / BUNDLE_SUBDIR):
        if (candidate / ANOMALY_JSON).is_file():
            return candidate
    return None


def carry_anomaly(src_bundle: str | Path, dst_bundle: str | Path) -> AnomalyModel | None:
    """Copy ``src_bundle``'s anomaly model into ``dst_bundle/anomaly`` (checked by loading the copy).

    Right for a retrained detector: the model holds its own copy of the backbone stages it scores with
    (``backbone.*`` tensors; the autoencoder is independent of the detector altogether), so its memory
    and calibrated threshold stay valid whatever new weights the detector gets. None when ``src_bundle``
    has none (the copy in ``dst_bundle``, if any, is removed: a bundle never keeps a stale one).
    """
    found = find_anomaly_dir(src_bundle)
    dst = Path(dst_bundle) / BUNDLE_SUBDIR
    if found is not None and found.resolve() == dst.resolve():
        return load_anomaly(dst, backend="torch")
    if dst.exists():
        shutil.rmtree(dst)
    if found is None:
        return None
    shutil.copytree(found, dst)
    return load_anomaly(dst, backend="torch")  # a check that the copy loads: no ONNX export


def read_anomaly_manifest(path: str | Path) -> dict[str, Any]:
    folder = find_anomaly_dir(path)
    if folder is None:
        raise AnomalyStoreError(f"{path}: no {ANOMALY_JSON} here or in {BUNDLE_SUBDIR}/")
    file = folder / ANOMALY_JSON
    try:
        manifest: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnomalyStoreError(f"{file}: malformed JSON: {exc}") from None
    for key in ("format", "kind", "version", "architecture", "weights"):
        if key not in manifest:
            raise AnomalyStoreError(f"{file}: field {key!r} is missing")
    if manifest["format"] != ANOMALY_FORMAT:
        raise AnomalyStoreError(f"{file}: format {manifest['format']!r} is not {ANOMALY_FORMAT!r}")
    if manifest["kind"] not in KINDS:
        raise AnomalyStoreError(f"{file}: kind {manifest['kind']!r} is unknown")
    return manifest


def load_anomaly(path: str | Path, *, backend: str = "auto", threads: int | None = None) -> AnomalyModel:
    """Rebuild the scorer the JSON describes from its safetensors file (sha256 checked).

    ``backend="auto"`` runs a backbone scorer's stages under ONNX Runtime when it is installed (as the
    detector on CPU: several times faster than torch there, same features to 1e-5); ``"torch"`` never.
    """
    if backend not in ("auto", "torch"):
        raise ValueError(f"backend: {backend!r} is not 'auto' or 'torch'")
    manifest = read_anomaly_manifest(path)
    folder = find_anomaly_dir(path)
    assert folder is not None
    weights = folder / manifest["weights"]["file"]
    if not weights.is_file() or sha256_file(weights) != manifest["weights"].get("sha256"):
        raise AnomalyStoreError(
            f"{weights}: missing or its sha256 does not match {ANOMALY_JSON} weights.sha256"
        )
    tensors = load_file(str(weights))
    try:
        scorer = _build(manifest, tensors)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise AnomalyStoreError(
            f"{folder / ANOMALY_JSON}: architecture and tensors disagree: {exc}"
        ) from None
    if backend == "auto" and not isinstance(scorer, AutoencoderScorer):
        scorer.use_onnxruntime(threads)
    return AnomalyModel(path=folder, manifest=manifest, scorer=scorer)


def _build(manifest: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Scorer:
    arch = manifest["architecture"]
    if manifest["kind"] == "conv-autoencoder":
        model = ConvAutoencoder(width=int(arch["width"]))
        model.load_state_dict({k.removeprefix("autoencoder."): v for k, v in tensors.items()})
        return AutoencoderScorer(model)
    gaussian = _build_gaussian(arch, tensors)
    if manifest["kind"] == "backbone-gaussian":
        return gaussian
    fusion = arch["fusion"]
    backbone_scale = ScoreScale(float(fusion["backbone_mean"]), float(fusion["backbone_std"]))
    if manifest["kind"] == "backbone-gaussian+window":
        window = WindowMeanMemory(
            cells=int(arch["window"]["cells"]),
            step=int(arch["window"]["step"]),
            **{name: tensors[f"window.{name}"].numpy() for name in GAUSSIAN_ARRAYS},
        ).check_shapes(int(arch["feature_dims"]))
        window_scale = ScoreScale(float(fusion["window_mean"]), float(fusion["window_std"]))
        return WindowFusedScorer(gaussian, window, backbone_scale=backbone_scale, window_scale=window_scale)
    glcm = GlcmMemory(
        window_px=int(arch["glcm"]["window_px"]),
        step_px=int(arch["glcm"]["step_px"]),
        settings=FeatureSettings.model_validate(arch["glcm"]["features"]),
        **{name: tensors[f"glcm.{name}"].numpy() for name in GAUSSIAN_ARRAYS},
    ).check_shapes()
    return TextureFusedScorer(
        gaussian,
        glcm,
        backbone_scale=backbone_scale,
        glcm_scale=ScoreScale(float(fusion["glcm_mean"]), float(fusion["glcm_std"])),
    )


def _build_gaussian(arch: dict[str, Any], tensors: dict[str, torch.Tensor]) -> FeatureGaussian:
    depth, width, max_channels = SCALES[arch["backbone_size"]]
    neck = BackboneNeck(
        in_channels=int(arch["in_channels"]), width_mult=width, depth_mult=depth, max_channels=max_channels
    )
    extractor = EarlyBackbone(neck, last_stage=int(arch.get("last_stage", 3)), pool=int(arch.get("pool", 3)))
    state = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
    missing = set(extractor.feature_state()) - set(state)
    if missing:
        raise KeyError(f"{len(missing)} backbone tensors missing, e.g. {sorted(missing)[:2]}")
    extractor.load_state_dict(state)
    return FeatureGaussian(
        extractor,
        input_size=int(arch["input_size"]),
        mean=tensors["gaussian.mean"],
        precision=tensors["gaussian.precision"],
    )
