"""Classical model bundles: ``manifest.json`` plus ``weights.safetensors`` (NumPy arrays), never a pickle.

Like the detector bundles (``training/bundle.py``) the manifest names the format, a version, the classes
and the inputs; here the inputs are the feature settings, so the weights' shapes are checked against the
feature layout before a single prediction. A bundle is untrusted input: every problem is a
:class:`ClassicBundleError` naming the file and the field, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import JsonValue, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from datasets.settings import StrictModel, format_validation_error
from datasets.texture.linear import ClassifierKind, LinearTextureModel
from datasets.texture.settings import FeatureSettings

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
CLASSIC_FORMAT = "steel-classic-bundle/1"
TENSORS = ("scaler.mean", "scaler.scale", "linear.coef", "linear.intercept")
Task = Literal["image-class", "defect-tile"]
# A bundle is untrusted: nothing is read whole before its size is checked. The manifest holds settings and a
# report of metrics (a few KiB); the weights hold float64 arrays of the manifest's shapes plus a JSON header.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
SAFETENSORS_HEADER_BYTES = 64 * 1024


class ClassicBundleError(ValueError):
    """A classical bundle is missing, malformed, or its manifest and weights disagree."""


class WeightsEntry(StrictModel):
    file: str
    sha256: str

    @field_validator("file")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError("must be a file name inside the bundle folder")
        return name


class ClassicManifest(StrictModel):
    """What ``manifest.json`` holds; ``report`` is free JSON (metrics, ablation, split, training)."""

    format: Literal["steel-classic-bundle/1"]
    name: str
    version: str
    created: str
    task: Task
    class_names: tuple[str, ...]
    classifier: ClassifierKind
    features: FeatureSettings
    layout: dict[str, tuple[int, int]]
    weights: WeightsEntry
    report: dict[str, JsonValue] = {}

    @field_validator("class_names")
    @classmethod
    def _classes(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError("needs at least two distinct class names")
        return names


@dataclass(frozen=True)
class ClassicBundle:
    path: Path
    manifest: ClassicManifest
    model: LinearTextureModel

    @property
    def version(self) -> str:
        return self.manifest.version


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def save_classic_bundle(
    out_dir: str | Path, model: LinearTextureModel, *, task: Task, version: str, report: dict[str, JsonValue]
) -> Path:
    """Write ``out_dir/weights.safetensors`` and ``out_dir/manifest.json``; returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = dict(zip(TENSORS, (model.mean, model.scale, model.coef, model.intercept), strict=True))
    save_file(
        {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}, str(out_dir / WEIGHTS)
    )
    manifest = ClassicManifest(
        format=CLASSIC_FORMAT,
        name=out_dir.name,
        version=version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        task=task,
        class_names=model.class_names,
        classifier=model.kind,
        features=model.settings,
        layout=dict(model.settings.layout()),
        weights=WeightsEntry(file=WEIGHTS, sha256=_sha256(out_dir / WEIGHTS)),
        report=report,
    )
    text = json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"
    (out_dir / MANIFEST).write_text(text, encoding="utf-8")
    return out_dir


def read_classic_manifest(bundle_dir: Path) -> ClassicManifest:
    path = bundle_dir / MANIFEST
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_MANIFEST_BYTES:
        raise ClassicBundleError(f"{path}: {size} bytes, more than a manifest's {MAX_MANIFEST_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClassicBundleError(f"{path}: no classical bundle manifest here") from None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad UTF-8, JSON or huge integers
        raise ClassicBundleError(f"{path}: unreadable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ClassicBundleError(f"{path}: top level must be an object, got {type(data).__name__}")
    if data.get("format") != CLASSIC_FORMAT:
        raise ClassicBundleError(f"{path}: field 'format' is {data.get('format')!r}, not {CLASSIC_FORMAT!r}")
    try:
        manifest = ClassicManifest.model_validate(data)
    except ValidationError as exc:
        raise ClassicBundleError(f"{path}:\n{format_validation_error(exc)}") from None
    expected = {g: tuple(v) for g, v in manifest.features.layout().items()}
    if manifest.layout != expected:
        raise ClassicBundleError(
            f"{path}: field 'layout' {manifest.layout} does not follow 'features' ({expected})"
        )
    return manifest


def _read_tensors(path: Path, manifest: ClassicManifest) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ClassicBundleError(f"{path}: weights file named by manifest weights.file is missing")
    classes, features = len(manifest.class_names), manifest.features.length
    most = SAFETENSORS_HEADER_BYTES + 8 * (2 * features + classes * features + classes)
    size = path.stat().st_size
    if size > most:
        raise ClassicBundleError(
            f"{path}: {size} bytes, more than the {most} that float64 arrays for the manifest's "
            f"class_names ({classes}) and features ({features} columns) take"
        )
    digest = _sha256(path)
    if digest != manifest.weights.sha256:
        raise ClassicBundleError(
            f"{path}: sha256 {digest[:12]}… does not match manifest weights.sha256 "
            f"{manifest.weights.sha256[:12]}…"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ClassicBundleError(f"{path}: not a safetensors file: {exc}") from None
    if sorted(tensors) != sorted(TENSORS):
        raise ClassicBundleError(f"{path}: tensors {sorted(tensors)}, expected {sorted(TENSORS)}")
    return tensors


def _check_shapes(path: Path, tensors: dict[str, np.ndarray], classes: int, features: int) -> None:
    expected = {
        "scaler.mean": (features,),
        "scaler.scale": (features,),
        "linear.coef": (classes, features),
        "linear.intercept": (classes,),
    }
    for name, shape in expected.items():
        array = tensors[name]
        if array.shape != shape or array.dtype.kind != "f":
            raise ClassicBundleError(
                f"{path}: tensor {name!r} is {array.dtype}{list(array.shape)}, expected float{list(shape)} "
                f"({classes} classes x {features} features from the manifest)"
            )
        if not np.all(np.isfinite(array)):
            raise ClassicBundleError(f"{path}: tensor {name!r} holds NaN or infinite values")
    if np.any(tensors["scaler.scale"] <= 0):
        raise ClassicBundleError(f"{path}: tensor 'scaler.scale' must be positive")


def load_classic_bundle(path: str | Path) -> ClassicBundle:
    """Read and check a bundle folder (or its manifest file); any disagreement is a ClassicBundleError."""
    path = Path(path)
    bundle_dir = path.parent if path.name == MANIFEST else path
    if not bundle_dir.is_dir():
        raise ClassicBundleError(f"{bundle_dir}: not a folder (expected a classical model bundle)")
    manifest = read_classic_manifest(bundle_dir)
    weights = bundle_dir / manifest.weights.file
    tensors = _read_tensors(weights, manifest)
    _check_shapes(weights, tensors, len(manifest.class_names), manifest.features.length)
    model = LinearTextureModel(
        settings=manifest.features,
        class_names=manifest.class_names,
        kind=manifest.classifier,
        mean=tensors["scaler.mean"].astype(np.float64),
        scale=tensors["scaler.scale"].astype(np.float64),
        coef=tensors["linear.coef"].astype(np.float64),
        intercept=tensors["linear.intercept"].astype(np.float64),
    )
    return ClassicBundle(path=bundle_dir, manifest=manifest, model=model)
