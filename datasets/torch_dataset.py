"""The torch ``Dataset`` both detectors train and evaluate on.

Training runs on a couple of CPU cores, so the expensive part (JPEG decode and resize to the model's
input size) is done once per image: with ``preload`` every image is decoded, resized and kept in one
contiguous uint8 array, and its boxes are scaled with it. ``__getitem__`` then only runs the
(optional) albumentations pipeline and converts to a tensor.

Targets follow torchvision's detection contract, so Faster R-CNN and our YOLO read the same batch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.augment import MOSAIC_KEY, mosaic_partners, reseed_transform
from datasets.copy_paste import Donor, paste_defects
from datasets.model import ImageRecord

__all__ = [
    "DatasetError",
    "DetectionDataset",
    "Target",
    "class_index",
    "collate_detection",
    "seed_worker",
]

Target = dict[str, Any]
"""``{"boxes": float32 (N,4) xyxy, "labels": int64 (N,), "image_id": int, "orig_size": (h, w)}``."""


class DatasetError(ValueError):
    """A record cannot be served: missing path, unreadable image, unknown label, size mismatch."""


def class_index(class_names: Sequence[str]) -> dict[str, int]:
    """Map each class name to its index; duplicate names are an error (indices would be ambiguous)."""
    index: dict[str, int] = {}
    for i, name in enumerate(class_names):
        if name in index:
            raise DatasetError(f"class name {name!r} appears twice in class_names")
        index[name] = i
    return index


class DetectionDataset(Dataset[tuple[torch.Tensor, Target]]):
    """Images and boxes of ``records`` resized to ``image_size`` x ``image_size``.

    Args:
        records: Images to serve, in order (``image_id`` is the position here).
        class_names: Label order; ``labels`` in the target index into it.
        image_size: Side length of the (square) model input in pixels.
        in_channels: 1 (grayscale, cached HxW) or 3 (RGB, cached HxWx3).
        transform: Called as ``transform(image=, bboxes=, labels=)`` on the cached uint8 image, e.g.
            :func:`datasets.augment.build_transform`; ``None`` serves the resized image as is.
        preload: Decode every image once at construction (errors surface there); otherwise decode
            with OpenCV on every access.
        copy_paste: ``(probability, most defects)``: paste boxed defects of other images of the set into
            an image before ``transform`` (which must be a training pipeline: its seeded generator draws).

    Raises:
        DatasetError: A record has no path, an unreadable image (preload), a label not in
            ``class_names`` or a size different from its annotation.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        *,
        image_size: int = 224,
        in_channels: int = 1,
        transform: Callable[..., dict[str, Any]] | None = None,
        preload: bool = True,
        copy_paste: tuple[float, int] = (0.0, 1),
    ):
        if in_channels not in (1, 3):
            raise DatasetError(f"in_channels must be 1 or 3, got {in_channels}")
        if image_size <= 0:
            raise DatasetError(f"image_size must be positive, got {image_size}")
        self.records = list(records)
        self.class_names = tuple(class_names)
        self.image_size = image_size
        self.in_channels = in_channels
        self.transform = transform
        self._mosaic_partners = mosaic_partners(transform)
        self.copy_paste = copy_paste
        self.composites = True  # mosaic and copy-paste on; ``set_composites`` switches them
        ops = transform.transforms if isinstance(transform, A.Compose) else []
        self._mosaics = [(op, op.p) for op in ops if isinstance(op, A.Mosaic)]
        if copy_paste[0] > 0 and not isinstance(transform, A.Compose):
            raise DatasetError("copy_paste needs a training pipeline (datasets.augment.build_transform)")
        self.preload = preload
        index = class_index(self.class_names)
        self._labels = [_labels_of(rec, index) for rec in self.records]
        self._boxed = [j for j, labels in enumerate(self._labels) if len(labels)]  # copy-paste donors
        self._source_boxes = [_boxes_of(rec) for rec in self.records]
        for rec in self.records:
            if rec.path is None:
                raise DatasetError(f"{rec.name}: image file not found (record has no path)")
        self._cache: np.ndarray | None = None
        self._cached_boxes: list[np.ndarray] = []
        self._orig_sizes: list[tuple[int, int]] = []
        if preload:
            self._fill_cache()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Target]:
        """Return ``image`` float32 (C,H,W) in [0, 1] and its target (boxes in the served image)."""
        image, boxes, orig_size = self._load(i)
        labels = self._labels[i]
        if self.composites and self.copy_paste[0] > 0:
            image, boxes, labels = self._paste_into(i, image, boxes, labels)
        if self.transform is not None:
            # Copy: the cache must survive transforms that would work in place or return views.
            extra = {MOSAIC_KEY: self._mosaic_items(i)} if self._mosaic_partners and self.composites else {}
            out = self.transform(image=image.copy(), bboxes=boxes, labels=labels, **extra)
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        target: Target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
            "image_id": i,
            "orig_size": orig_size,
        }
        return self._to_tensor(image, self.records[i]), target

    def set_composites(self, on: bool) -> None:
        """Mosaic and copy-paste on or off (``close_mosaic_epochs``); the pipeline's other ops stay."""
        self.composites = on
        for op, p in self._mosaics:
            op.p = p if on else 0.0

    def _paste_into(
        self, i: int, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image ``i`` with defects of other boxed images pasted in, with the pipeline's generator."""
        assert isinstance(self.transform, A.Compose)  # checked in __init__
        rng = self.transform.random_generator
        p, most = self.copy_paste
        if rng.random() >= p or not self._boxed:
            return image, boxes, labels
        count = min(int(rng.integers(1, most + 1)), len(self._boxed))
        picks = [self._boxed[int(k)] for k in rng.choice(len(self._boxed), size=count, replace=False)]
        donors = []
        for j in (j for j in picks if j != i):  # never a defect of the image itself
            donor_image, donor_boxes, _ = self._load(j)
            donors.append(Donor(donor_image, donor_boxes, self._labels[j]))
        return paste_defects(image, boxes, labels, donors, rng)

    def _mosaic_items(self, i: int) -> list[dict[str, np.ndarray]]:
        """Other images for the pipeline's Mosaic, drawn with the pipeline's own generator (seeded, and
        reseeded per epoch and worker like the rest of it), never image ``i`` itself."""
        assert isinstance(self.transform, A.Compose)  # mosaic_partners() is 0 for anything else
        count = min(self._mosaic_partners, len(self) - 1)
        picks = self.transform.random_generator.choice(len(self) - 1, size=count, replace=False)
        items = []
        for j in (int(k) + int(k >= i) for k in picks):
            image, boxes, _ = self._load(j)
            items.append({"image": image.copy(), "bboxes": boxes, "labels": self._labels[j]})
        return items

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        if self._cache is not None:
            return self._cache[i], self._cached_boxes[i], self._orig_sizes[i]
        return self._decode(i)

    def _fill_cache(self) -> None:
        size = self.image_size
        shape = (len(self.records), size, size) + ((3,) if self.in_channels == 3 else ())
        cache = np.empty(shape, dtype=np.uint8)
        boxes: list[np.ndarray] = []
        sizes: list[tuple[int, int]] = []
        for i in range(len(self.records)):
            cache[i], box, orig = self._decode(i)
            boxes.append(box)
            sizes.append(orig)
        self._cache, self._cached_boxes, self._orig_sizes = cache, boxes, sizes

    def _decode(self, i: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Read record ``i`` and resize it: uint8 (S,S[,3]), boxes float32 (N,4), source (h, w)."""
        rec = self.records[i]
        image = _read_image(rec, self.in_channels)
        h, w = image.shape[:2]
        if rec.width > 0 and rec.height > 0 and (rec.width, rec.height) != (w, h):
            raise DatasetError(
                f"{rec.path}: image is {w}x{h} but its annotation says {rec.width}x{rec.height}; "
                "boxes would be misplaced"
            )
        size = self.image_size
        if (h, w) != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        boxes = _fit_boxes(self._source_boxes[i], sx=size / w, sy=size / h, size=size)
        if len(boxes) != len(self._labels[i]):
            raise DatasetError(f"{rec.path}: a box has no area inside the {w}x{h} image")
        return image, boxes, (h, w)

    def _to_tensor(self, image: np.ndarray, rec: ImageRecord) -> torch.Tensor:
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[2] != self.in_channels:
            raise DatasetError(
                f"{rec.name}: transform returned {image.shape[2]} channels, expected {self.in_channels}"
            )
        chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return chw.to(torch.float32).div_(255.0)


def _read_image(rec: ImageRecord, in_channels: int) -> np.ndarray:
    path = Path(rec.path) if rec.path is not None else None
    if path is None:
        raise DatasetError(f"{rec.name}: image file not found (record has no path)")
    flag = cv2.IMREAD_GRAYSCALE if in_channels == 1 else cv2.IMREAD_COLOR
    # imdecode of the bytes, not imread: imread fails silently on some non-ASCII paths.
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, flag) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    if in_channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _labels_of(rec: ImageRecord, index: dict[str, int]) -> np.ndarray:
    try:
        return np.array([index[box.label] for box in rec.boxes], dtype=np.int64)
    except KeyError as exc:
        raise DatasetError(
            f"{rec.path or rec.name}: label {exc.args[0]!r} is not in class_names {tuple(index)}"
        ) from None


def _boxes_of(rec: ImageRecord) -> np.ndarray:
    return np.array([box.xyxy for box in rec.boxes], dtype=np.float32).reshape(-1, 4)


def _fit_boxes(boxes: np.ndarray, *, sx: float, sy: float, size: int) -> np.ndarray:
    """Scale (N,4) xyxy boxes into the resized image and clip them to it."""
    scaled = boxes * np.array([sx, sy, sx, sy], dtype=np.float32)
    np.clip(scaled, 0.0, float(size), out=scaled)
    keep = (scaled[:, 2] > scaled[:, 0]) & (scaled[:, 3] > scaled[:, 1])
    return scaled[keep]


Batch = tuple[torch.Tensor, list[Target]]  # what collate_detection makes: (B,C,H,W) images, B targets


def collate_detection(batch: Sequence[tuple[torch.Tensor, Target]]) -> Batch:
    """Stack same-size images into (B,C,H,W); targets stay a list (box counts differ per image)."""
    if not batch:
        raise DatasetError("cannot collate an empty batch")
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


def seed_worker(worker_id: int) -> None:
    """``DataLoader`` ``worker_init_fn``: seed this worker from ``torch.initial_seed()``.

    Torch seeds each worker with ``base_seed + worker_id`` (``base_seed`` drawn from the loader's
    generator), so seeding ``numpy``, ``random`` and the dataset's albumentations pipeline from it makes
    augmentation reproducible per worker and different between workers.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    for dataset in _unwrap(info.dataset):
        transform = getattr(dataset, "transform", None)
        if transform is not None and hasattr(transform, "set_random_state"):
            reseed_transform(transform, seed)


def _unwrap(dataset: Any) -> list[Any]:
    """The dataset and those it wraps (``Subset.dataset``, ``ConcatDataset.datasets``)."""
    found = [dataset]
    inner = getattr(dataset, "dataset", None)
    if inner is not None:
        found += _unwrap(inner)
    for child in getattr(dataset, "datasets", None) or []:
        found += _unwrap(child)
    return found
