"""Real NEU-DET images with their boxes read straight from the VOC XML, as model-ready tensors.

The model tests use these instead of the dataset package so a reader bug cannot hide a model bug: the
boxes come from ElementTree and the one rule of VOC (1-based, inclusive corners).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import pytest
import torch
from defusedxml import ElementTree

from datasets.model import NEU_DET_CLASSES
from datasets.settings import data_root


def load_neu(name: str, *, size: int, channels: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One NEU-DET image as (C, size, size) in [0, 1] with its VOC boxes as 0-based xyxy pixels, rescaled."""
    root = data_root()
    if not (root / "images").is_dir():
        pytest.skip(f"NEU-DET development split not found at {root} (set STEEL_DATA)")
    gray = cv2.imread(str(root / "images" / f"{name}.jpg"), cv2.IMREAD_GRAYSCALE)
    assert gray is not None, f"cannot read {name}.jpg under {root}"
    scale = size / gray.shape[1]
    gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    image = torch.from_numpy(gray).float().div(255).expand(channels, -1, -1).clone()
    boxes, labels = [], []
    for obj in ElementTree.parse(root / "annotations" / f"{name}.xml").getroot().iter("object"):
        bb = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([(xmin - 1) * scale, (ymin - 1) * scale, xmax * scale, ymax * scale])
        labels.append(NEU_DET_CLASSES.index(obj.find("name").text))
    return image, {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels, dtype=torch.int64)}


def load_neu_batch(
    names: Sequence[str], *, size: int, channels: int = 1
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Several ``load_neu`` images stacked into one (N, C, size, size) batch with their targets."""
    pairs = [load_neu(name, size=size, channels=channels) for name in names]
    return torch.stack([image for image, _ in pairs]), [target for _, target in pairs]
