"""Ensemble bundles: member bundles (and, optionally, each image mirrored) fused by weighted box fusion.

An ensemble is a bundle folder like any other (``kind: ensemble`` in its manifest, no weights of its
own), so ``steel eval``, ``steel predict`` and the daemon's ``detector.model`` take it unchanged. The
wrapper keeps the one model contract of :mod:`training.registry`: in eval mode ``forward(images)`` with
``images (B, C, S, S)`` in [0, 1] returns one ``{boxes (N, 4) xyxy pixels of the input, scores (N,),
labels (N,)}`` per image. Fusion is ``ensemble_boxes.weighted_boxes_fusion`` (boxes normalised to [0, 1]
as it expects); each member runs its own NMS first, as it does alone.

Manifest example (member paths are relative to the ensemble's folder)::

    "kind": "ensemble",
    "ensemble": {
      "members": [{"path": "../neu-yolo-n", "weight": 1.0}],
      "fusion": {"method": "wbf", "iou_thr": 0.55, "skip_box_thr": 0.001, "conf_type": "avg"},
      "tta": {"hflip": true}
    }
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from ensemble_boxes import weighted_boxes_fusion
from torch import nn

from training.config import ModelConfig
from training.manifest import (
    BUNDLE_FORMAT,
    MANIFEST,
    BundleError,
    EnsembleManifest,
    EnsembleSpec,
    FusionSpec,
    read_manifest,
    rewrite_manifest,
    validate_manifest,
)

Outputs = list[dict[str, torch.Tensor]]


class MemberBundle(Protocol):
    """What an ensemble needs of a loaded member bundle (``training.bundle.Bundle`` has it)."""

    model: nn.Module
    model_config: ModelConfig | None

    @property
    def class_names(self) -> list[str]: ...
    @property
    def in_channels(self) -> int: ...
    @property
    def image_size(self) -> int: ...


class MemberLoader(Protocol):
    def __call__(self, path: Path, *, device: str | torch.device) -> MemberBundle: ...


class EnsembleDetector(nn.Module):
    """Runs every member (and its mirrored view) on the batch and fuses their detections per image.

    Args:
        members: detectors in eval mode, each with the model contract.
        member_sizes: the square input size each member was trained at; the batch is resized to it.
        weights: fusion weight per member (a mirrored view weighs as much as its member).
        fusion: WBF settings; ``hflip``: add the mirrored view of every member.
    """

    def __init__(
        self,
        members: list[nn.Module],
        *,
        member_sizes: list[int],
        weights: list[float],
        fusion: FusionSpec,
        hflip: bool,
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.member_sizes = list(member_sizes)
        self.weights = list(weights)
        self.fusion = fusion
        self.hflip = hflip

    def _views(self, images: torch.Tensor) -> list[tuple[Outputs, int, bool, float]]:
        """Each member's outputs on the batch (and on its mirror): ``(outputs, size, mirrored, weight)``."""
        views = []
        for member, size, weight in zip(self.members, self.member_sizes, self.weights, strict=True):
            x = images
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            views.append((member(x), size, False, weight))
            if self.hflip:
                views.append((member(torch.flip(x, dims=[-1])), size, True, weight))
        return views

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> Outputs:
        if self.training or targets is not None:
            raise RuntimeError("an ensemble is not trained as a whole: train its member bundles")
        size_h, size_w = images.shape[-2], images.shape[-1]
        views = self._views(images)
        scale = torch.tensor([size_w, size_h, size_w, size_h], dtype=torch.float32)
        fused: Outputs = []
        for i in range(images.shape[0]):
            boxes, scores, labels = fuse_views(
                [(out[i], size, mirrored) for out, size, mirrored, _ in views],
                weights=[w for *_, w in views],
                fusion=self.fusion,
            )
            fused.append(
                {
                    "boxes": (torch.from_numpy(boxes).float() * scale).to(images.device),
                    "scores": torch.from_numpy(scores).float().to(images.device),
                    "labels": torch.from_numpy(labels).long().to(images.device),
                }
            )
        return fused


def _normalised(out: dict[str, torch.Tensor], size: int, mirrored: bool) -> np.ndarray:
    """``(N, 4)`` boxes in [0, 1] of the unmirrored image (WBF's coordinate convention)."""
    boxes = out["boxes"].detach().float().cpu().numpy().reshape(-1, 4) / float(size)
    if mirrored:
        boxes = np.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=1)
    return np.clip(boxes, 0.0, 1.0)


def fuse_views(
    views: list[tuple[dict[str, torch.Tensor], int, bool]], *, weights: list[float], fusion: FusionSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """WBF over the views of one image: ``(boxes (N, 4) in [0, 1], scores (N,), labels (N,))``,
    highest score first, at most ``fusion.max_detections``."""
    boxes_list = [_normalised(out, size, mirrored) for out, size, mirrored in views]
    scores_list = [out["scores"].detach().float().cpu().numpy().reshape(-1) for out, _, _ in views]
    labels_list = [out["labels"].detach().cpu().numpy().reshape(-1) for out, _, _ in views]
    if sum(len(s) for s in scores_list) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    boxes, scores, labels = weighted_boxes_fusion(
        boxes_list,
        scores_list,
        labels_list,
        weights=weights,
        iou_thr=fusion.iou_thr,
        skip_box_thr=fusion.skip_box_thr,
        conf_type=fusion.conf_type,
    )
    order = np.argsort(-scores, kind="stable")[: fusion.max_detections]
    return boxes[order].astype(np.float32), scores[order].astype(np.float32), labels[order].astype(np.int64)


def load_ensemble(
    bundle_dir: Path,
    spec: EnsembleManifest,
    *,
    device: str | torch.device,
    load_member: MemberLoader,
) -> EnsembleDetector:
    """Load every member bundle the manifest lists (with ``load_member``, i.e. ``load_bundle``: passed in,
    so this module does not import the bundle loader that imports it) and wrap them; members must be
    single-model bundles with the ensemble's classes and channel count."""
    members, sizes = [], []
    where = bundle_dir / MANIFEST
    for i, member in enumerate(spec.ensemble.members):
        field = f"field ensemble.members.{i}.path"
        member_dir = (bundle_dir / member.path).resolve()
        if member_dir == bundle_dir.resolve() or not member_dir.is_dir():
            raise BundleError(f"{where}: {field}: {member_dir} is not another bundle folder")
        try:
            loaded = load_member(member_dir, device=device)
        except BundleError as exc:
            raise BundleError(f"{where}: {field}: member bundle refused: {exc}") from None
        if loaded.model_config is None:
            raise BundleError(f"{where}: {field}: {member_dir} is an ensemble; members must be single models")
        if loaded.class_names != list(spec.class_names):
            raise BundleError(f"{where}: {field}: classes {loaded.class_names} differ from class_names")
        if loaded.in_channels != spec.input.channels:
            raise BundleError(f"{where}: {field}: {loaded.in_channels} channels, not input.channels")
        members.append(loaded.model)
        sizes.append(loaded.image_size)
    return (
        EnsembleDetector(
            members,
            member_sizes=sizes,
            weights=[m.weight for m in spec.ensemble.members],
            fusion=spec.ensemble.fusion,
            hflip=spec.ensemble.tta.hflip,
        )
        .to(device)
        .eval()
    )


def save_ensemble(out_dir: Path, *, version: str, spec: EnsembleSpec, score_threshold: float = 0.25) -> Path:
    """Write an ensemble bundle folder (its manifest only; member paths in ``spec`` are relative to
    ``out_dir``). Classes and input come from the first member. Returns ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)  # first: a member path like ../x only resolves from it
    first = read_manifest(out_dir / spec.members[0].path)
    manifest = {
        "format": BUNDLE_FORMAT,
        "kind": "ensemble",
        "name": out_dir.name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "class_names": first["class_names"],
        "input": first["input"],
        "thresholds": {"score": score_threshold, "nms_iou": None},
        "ensemble": json.loads(spec.model_dump_json()),
        "metrics": {},
    }
    validate_manifest(out_dir / MANIFEST, manifest)  # refuse here rather than at the first load
    rewrite_manifest(out_dir, manifest)
    return out_dir
