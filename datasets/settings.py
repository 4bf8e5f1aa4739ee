"""Settings shared by every package: where the data lives and how YAML configs become pydantic models.

A wrong config value must fail before any work starts, naming the YAML key path, the value given
and what is allowed (``train.optimizer.lr: -0.1 is not > 0``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

REPO_ROOT = Path(__file__).resolve().parent.parent
M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A config file or override is invalid; the message lists every bad key path."""


def data_root() -> Path:
    """The NEU-DET development split: ``$STEEL_DATA`` or ``../shared/datasets/neu-det`` next to the repo."""
    env = os.environ.get("STEEL_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "datasets" / "neu-det").resolve()


def _describe(err: ErrorDetails, prefix: str) -> str:
    path = ".".join(str(p) for p in (prefix, *err.get("loc", ())) if p != "")
    value = err.get("input")
    msg = err.get("msg", "invalid")
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[
            kind
        ]
        bound = next(iter(ctx.values()), "")
        return f"{path}: {value!r} is not {op} {bound}"
    if kind == "extra_forbidden":
        return f"{path}: unknown key (value {value!r})"
    if kind == "missing":
        return f"{path}: required key is missing"
    return f"{path}: {value!r} is invalid: {msg}"


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    return "\n".join(_describe(e, prefix) for e in exc.errors())


def _apply_override(data: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected key.path=value")
    key, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def validate_config(model: type[M], data: dict[str, Any], *, source: str = "config", prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}:\n{format_validation_error(exc, prefix)}") from None


def load_config(
    path: str | Path, model: type[M], overrides: list[str] | None = None, *, prefix: str = ""
) -> M:
    """Load a YAML file into ``model``; ``overrides`` are ``key.path=value`` strings applied first."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    for assignment in overrides or []:
        _apply_override(data, assignment)
    return validate_config(model, data, source=str(path), prefix=prefix)
