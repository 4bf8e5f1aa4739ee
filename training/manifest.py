"""The bundle manifest as a strict pydantic model: a hostile or broken ``manifest.json`` fails here, as one
:class:`BundleError` naming the file and the field, before anything is built, resized or loaded from it.

Two kinds share the format: ``model`` (an architecture plus ``weights.safetensors``) and ``ensemble``
(member bundles plus fusion settings, :mod:`training.ensemble`). Unknown keys are errors at every level
except the free-form audit records (``metrics``, ``split``, ``training``, ``thresholds.calibration``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue, ValidationError, field_validator, model_validator

from datasets.settings import StrictModel
from training.config import ModelConfig

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "steel-model-bundle/1"
MAX_INPUT_SIZE = 4096  # pixels a side; the model configs allow 2048, this bounds what a resize may allocate


class BundleError(ValueError):
    """A bundle is missing, malformed, or its manifest and weights disagree."""


ClassName = Annotated[str, Field(min_length=1, max_length=100)]
Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
AuditRecord = dict[str, JsonValue]


class InputSpec(StrictModel):
    """What the model eats: ``size x size`` pixels with ``channels`` channels, scaled to [0, 1]."""

    size: int = Field(ge=32, le=MAX_INPUT_SIZE)
    channels: Literal[1, 3]
    layout: Literal["NCHW"] = "NCHW"
    normalisation: str = ""
    resize: str = ""


class ThresholdSpec(StrictModel):
    """``score``: the default threshold; ``per_class``: the calibrated operating point (class -> score)."""

    score: float = Field(ge=0.0, lt=1.0, allow_inf_nan=False)
    nms_iou: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    per_class: dict[ClassName, Score] | None = None
    calibration: AuditRecord | None = None


class WeightsSpec(StrictModel):
    """The weights file: a plain file name inside the bundle folder, with its content hash."""

    file: str = Field(min_length=1, max_length=255)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tensors: int = Field(ge=1)
    parameters: int = Field(ge=1)
    # the stored floating-point type; the model is built in fp32 and loading casts (``steel bundle-fp16``)
    dtype: Literal["float32", "float16"] = "float32"

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in (".", "..") or value.startswith("."):
            raise ValueError("must be a plain file name inside the bundle folder (no path, not hidden)")
        return value


class _ManifestBase(StrictModel):
    format: Literal["steel-model-bundle/1"]
    name: str = Field("", max_length=200)
    version: str = Field(min_length=1, max_length=200)
    created: str = ""
    class_names: list[ClassName] = Field(min_length=1, max_length=1000)
    input: InputSpec
    thresholds: ThresholdSpec
    metrics: AuditRecord = Field(default_factory=dict)

    @field_validator("class_names")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"duplicate class names {repeated}")
        return value

    @model_validator(mode="after")
    def _per_class_known(self) -> _ManifestBase:
        unknown = sorted(set(self.thresholds.per_class or {}) - set(self.class_names))
        if unknown:
            raise ValueError(f"thresholds.per_class: {unknown} are not in class_names")
        return self


class ModelManifest(_ManifestBase):
    kind: Literal["model"] = "model"
    architecture: ModelConfig
    weights: WeightsSpec
    split: AuditRecord = Field(default_factory=dict)
    training: AuditRecord = Field(default_factory=dict)
    code_version: str = ""
    torch_version: str = ""

    @model_validator(mode="after")
    def _input_matches_architecture(self) -> ModelManifest:
        if self.input.size != self.architecture.image_size:
            raise ValueError(
                f"input.size {self.input.size} differs from architecture.image_size "
                f"{self.architecture.image_size}"
            )
        if self.input.channels != self.architecture.in_channels:
            raise ValueError(
                f"input.channels {self.input.channels} differs from architecture.in_channels "
                f"{self.architecture.in_channels}"
            )
        return self


class MemberSpec(StrictModel):
    """One member bundle: a folder path relative to the ensemble's folder, and its fusion weight."""

    path: str = Field(min_length=1, max_length=500)
    weight: float = Field(1.0, gt=0.0, le=100.0, allow_inf_nan=False)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if PurePosixPath(value).is_absolute() or "\\" in value:
            raise ValueError("must be a folder path relative to the ensemble's folder")
        return value


class FusionSpec(StrictModel):
    """Weighted box fusion (``ensemble_boxes.weighted_boxes_fusion``) settings."""

    method: Literal["wbf"] = "wbf"
    iou_thr: float = Field(0.55, gt=0.0, le=1.0)
    skip_box_thr: float = Field(0.001, ge=0.0, lt=1.0)
    conf_type: Literal["avg", "max", "box_and_model_avg", "absent_model_aware_avg"] = "avg"
    max_detections: int = Field(300, ge=1, le=10_000)


class TtaSpec(StrictModel):
    """Test-time augmentation: ``hflip`` scores every image mirrored too and fuses both."""

    hflip: bool = False


class EnsembleSpec(StrictModel):
    members: list[MemberSpec] = Field(min_length=1, max_length=8)
    fusion: FusionSpec = Field(default_factory=FusionSpec)
    tta: TtaSpec = Field(default_factory=TtaSpec)


class EnsembleManifest(_ManifestBase):
    kind: Literal["ensemble"]
    ensemble: EnsembleSpec


Manifest = ModelManifest | EnsembleManifest


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in ("function-after", "lax-or-strict"))]
    return ".".join(parts) or "(top level)"


def describe_errors(path: Path, exc: ValidationError) -> str:
    """One line: the file, then each bad field as ``key.path: reason`` (the first three)."""
    errors = exc.errors(include_url=False)
    shown = []
    for err in errors[:3]:
        where = _location(err["loc"])
        if err["type"] == "missing":
            shown.append(f"field {where!r} is missing")
            continue
        got = err.get("input")
        hint = "" if isinstance(got, dict | list) or got is None else f" (got {got!r:.40})"
        prefix = "architecture is invalid: " if err["loc"][:1] == ("architecture",) else ""
        shown.append(f"{prefix}field {where}: {err['msg']}{hint}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return f"{path}: " + "; ".join(shown) + more


def parse_manifest(path: Path) -> tuple[Manifest, dict[str, JsonValue]]:
    """Read and validate ``path`` (a manifest file); returns the model and the raw JSON object.

    Raises:
        BundleError: missing, a directory, not UTF-8 JSON, not an object, or any field invalid.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise BundleError(f"{path}: no model bundle manifest here") from None
    except IsADirectoryError:
        raise BundleError(f"{path}: is a directory, not a manifest file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: malformed JSON: {exc}") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
    return validate_manifest(path, raw), raw


def validate_manifest(path: Path, raw: object) -> Manifest:
    """Validate an already-read manifest object; ``path`` names it in the error."""
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: must hold one JSON object, not {type(raw).__name__}")
    if raw.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: format {raw.get('format')!r} is not {BUNDLE_FORMAT!r}")
    kind = raw.get("kind", "model")
    model = EnsembleManifest if kind == "ensemble" else ModelManifest
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(describe_errors(path, exc)) from None


def _no_constant(name: str) -> float:
    """``NaN``/``Infinity`` are not JSON; Python's reader accepts them unless told not to."""
    raise ValueError(f"{name} is not valid JSON")


def rewrite_manifest(bundle_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Replace ``bundle_dir/manifest.json`` atomically (temp file, fsync, rename): a reader sees the old
    manifest or the new one, never half of one, even if the process dies mid-write."""
    path = Path(bundle_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path / MANIFEST if path.is_dir() else path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The bundle's manifest (folder or manifest file), validated; as the raw JSON object.

    Raises:
        BundleError: naming the file and the field.
    """
    return parse_manifest(manifest_path(path))[1]
