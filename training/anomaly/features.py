"""Our own detector's early backbone as a feature extractor (no downloaded weights).

The YOLO backbone's stages 2-3 (strides 4 and 8; optionally stage 4, stride 16) are run on the tile at
the detector's input size; each map is averaged over a 3 x 3 neighbourhood (PatchCore's local
aggregation, so one feature sees a patch rather than a pixel) and resized to stride 8, then concatenated:
(B, 32+64[+128], S/8, S/8) for YOLO-n. Stage 5, the neck and the head are skipped: they are most of the
detector's cost, and the anomaly score must stay a fraction of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.anomaly.base import to_gray
from training.inference import to_model_input
from training.models.yolo.backbone import BackboneNeck

FEATURE_PREFIXES = ("stem.", "stage2.", "stage3.", "stage4.")


class EarlyBackbone(nn.Module):
    def __init__(self, backbone: BackboneNeck, *, last_stage: int = 3, pool: int = 3):
        super().__init__()
        if last_stage not in (3, 4):
            raise ValueError(f"last_stage: {last_stage} is not 3 or 4")
        if pool < 1 or pool % 2 == 0:
            raise ValueError(f"pool: {pool} is not an odd number >= 1")
        self.last_stage = last_stage
        self.pool = pool  # the local aggregation's side (PatchCore: 3)
        self.stem, self.stage2, self.stage3 = backbone.stem, backbone.stage2, backbone.stage3
        self.stage4 = backbone.stage4 if last_stage == 4 else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images float (B, C, S, S) in [0, 1] -> features (B, D, S/8, S/8)."""
        p2 = self.stage2(self.stem(images))
        p3 = self.stage3(p2)
        size = p3.shape[-2:]
        k = self.pool
        p2 = F.avg_pool2d(p2, k, stride=1, padding=k // 2)
        # stride 4 -> 8: a 2x2 mean (what adaptive pooling does at exactly twice the size; exportable)
        exact = p2.shape[-2] == 2 * size[0] and p2.shape[-1] == 2 * size[1]
        parts = [F.avg_pool2d(p2, 2) if exact else F.adaptive_avg_pool2d(p2, size)]
        parts.append(F.avg_pool2d(p3, k, stride=1, padding=k // 2))
        if self.stage4 is not None:
            p4 = F.avg_pool2d(self.stage4(p3), k, stride=1, padding=k // 2)
            parts.append(F.interpolate(p4, size=size, mode="bilinear", align_corners=False))
        return torch.cat(parts, dim=1)

    def feature_state(self) -> dict[str, torch.Tensor]:
        """The tensors this extractor uses, named as in the detector's backbone."""
        return {
            k: v.detach().cpu().contiguous().clone()
            for k, v in self.state_dict().items()
            if k.startswith(FEATURE_PREFIXES[: self.last_stage])
        }


@torch.inference_mode()
def tile_features(
    extractor: EarlyBackbone,
    tiles: Sequence[np.ndarray],
    input_size: int,
    batch_size: int = 32,
    runner: Callable[[np.ndarray], np.ndarray] | None = None,
) -> torch.Tensor:
    """(B, D, S/8, S/8) features of uint8 tiles resized to ``input_size`` (S); by ``runner`` (the same
    stages under ONNX Runtime, ``training.anomaly.onnx``) when given, else by ``extractor`` in torch."""
    out = []
    for start in range(0, len(tiles), batch_size):
        images = model_inputs(tiles[start : start + batch_size], input_size)
        out.append(torch.from_numpy(runner(images)) if runner else extractor(torch.from_numpy(images)))
    return torch.cat(out)


def model_inputs(tiles: Sequence[np.ndarray], input_size: int) -> np.ndarray:
    """float32 (B, 1, S, S) in [0, 1]: uint8 tiles, grey, resized as the detector resizes them."""
    batch = np.stack([to_model_input(to_gray(t), size=input_size, channels=1) for t in tiles])
    return batch.astype(np.float32) / np.float32(255.0)
