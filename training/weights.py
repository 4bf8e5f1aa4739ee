"""Loading user-supplied local weights: never a download, never an arbitrary unpickle."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.save``'d dict (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def load_local_weights(model: nn.Module, path: str | Path, *, strict: bool = False) -> list[str]:
    """Copy every tensor whose name and shape match; returns the names that did not load."""
    state = read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if strict and len(usable) != len(own):
        missing = sorted(set(own) - set(usable))
        raise ValueError(f"{path}: {len(missing)} tensors missing or of another shape, e.g. {missing[:3]}")
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
