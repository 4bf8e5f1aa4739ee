"""DetectionDataset on real NEU-DET images: shapes, box scaling, zero boxes, errors, DataLoader workers."""

from __future__ import annotations

import cv2
import defusedxml.ElementTree as ET
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.augment import AugmentConfig, build_transform
from datasets.model import NEU_DET_CLASSES, Box, ImageRecord, Origin
from datasets.settings import data_root
from datasets.torch_dataset import (
    DatasetError,
    DetectionDataset,
    class_index,
    collate_detection,
    seed_worker,
)

torch.set_num_threads(1)

STEMS = ("crazing_1", "inclusion_130", "scratches_10", "patches_198")


def neu_record(stem: str) -> ImageRecord:
    """Parse one NEU-DET Pascal VOC XML (1-based inclusive) into a 0-based exclusive ImageRecord."""
    root = data_root()
    xml = root / "annotations" / f"{stem}.xml"
    tree = ET.parse(xml).getroot()
    boxes = []
    for obj in tree.findall("object"):
        bb = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (int(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append(Box(xmin - 1.0, ymin - 1.0, float(xmax), float(ymax), obj.find("name").text))
    size = tree.find("size")
    return ImageRecord(
        name=f"{stem}.jpg",
        width=int(size.find("width").text),
        height=int(size.find("height").text),
        boxes=tuple(boxes),
        path=root / "images" / f"{stem}.jpg",
        origin=Origin(str(xml)),
    )


@pytest.fixture(scope="module")
def records() -> list[ImageRecord]:
    return [neu_record(stem) for stem in STEMS]


@pytest.mark.parametrize(
    ("in_channels", "image_size"),
    [(1, 200), (1, 160), (3, 200), (3, 256)],
)
def test_item_shapes_and_dtypes(records, in_channels, image_size):
    ds = DetectionDataset(records, NEU_DET_CLASSES, image_size=image_size, in_channels=in_channels)
    assert len(ds) == len(records)
    image, target = ds[1]
    assert image.shape == (in_channels, image_size, image_size)
    assert image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(image.std()) > 0.01  # real texture, not a blank
    assert target["boxes"].dtype == torch.float32
    assert target["boxes"].shape == (len(records[1].boxes), 4)
    assert target["labels"].dtype == torch.int64
    assert target["image_id"] == 1
    assert target["orig_size"] == (200, 200)
    if in_channels == 3:
        # NEU-DET is grayscale stored as RGB: every channel carries the same picture.
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_pixels_are_the_resized_file(records):
    rec = records[0]
    ds = DetectionDataset([rec], NEU_DET_CLASSES, image_size=160, in_channels=1)
    expected = cv2.resize(cv2.imread(str(rec.path), cv2.IMREAD_GRAYSCALE), (160, 160))
    image, _ = ds[0]
    np.testing.assert_array_equal((image[0] * 255).round().to(torch.uint8).numpy(), expected)


def test_rgb_channel_order_matches_file(records):
    rec = records[2]
    ds = DetectionDataset([rec], NEU_DET_CLASSES, image_size=200, in_channels=3)
    rgb = cv2.cvtColor(cv2.imread(str(rec.path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image, _ = ds[0]
    np.testing.assert_array_equal((image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), rgb)


@pytest.mark.parametrize(("image_size", "scale"), [(200, 1.0), (100, 0.5), (320, 1.6)])
def test_boxes_scaled_with_image(records, image_size, scale):
    ds = DetectionDataset(records, NEU_DET_CLASSES, image_size=image_size)
    for i, rec in enumerate(records):
        _, target = ds[i]
        expected = np.array([b.xyxy for b in rec.boxes], dtype=np.float32) * scale
        np.testing.assert_allclose(target["boxes"].numpy(), expected, rtol=0, atol=1e-4)
        assert target["labels"].tolist() == [NEU_DET_CLASSES.index(b.label) for b in rec.boxes]


def test_known_box_values_crazing_1(records):
    # crazing_1.xml: xmin 2, ymin 2, xmax 193, ymax 194 (1-based inclusive).
    ds = DetectionDataset(records[:1], NEU_DET_CLASSES, image_size=100)
    _, target = ds[0]
    assert target["boxes"].tolist() == [[0.5, 0.5, 96.5, 97.0]]
    assert target["labels"].tolist() == [0]


def test_labels_follow_given_class_order(records):
    reordered = tuple(reversed(NEU_DET_CLASSES))
    ds = DetectionDataset(records[1:2], reordered, image_size=200)
    _, target = ds[0]
    assert set(target["labels"].tolist()) == {reordered.index("inclusion")}


def test_preload_off_matches_preload_on(records):
    on = DetectionDataset(records, NEU_DET_CLASSES, image_size=128, in_channels=3, preload=True)
    off = DetectionDataset(records, NEU_DET_CLASSES, image_size=128, in_channels=3, preload=False)
    for i in range(len(records)):
        (a, ta), (b, tb) = on[i], off[i]
        assert torch.equal(a, b)
        assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])


def test_zero_box_image(records):
    empty = ImageRecord(name="crazing_1.jpg", width=200, height=200, boxes=(), path=records[0].path)
    train = build_transform(AugmentConfig(crop_p=1.0, clahe_p=1.0), image_size=160, train=True, seed=0)
    for transform in (None, train):
        ds = DetectionDataset([empty, records[1]], NEU_DET_CLASSES, image_size=160, transform=transform)
        image, target = ds[0]
        assert image.shape == (1, 160, 160)
        assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
        images, targets = collate_detection([ds[0], ds[1]])
        assert images.shape == (2, 1, 160, 160)
        assert len(targets[0]["boxes"]) == 0
        assert 0 < len(targets[1]["boxes"]) == len(targets[1]["labels"]) <= len(records[1].boxes)


def test_transform_does_not_corrupt_cache(records):
    transform = build_transform(
        AugmentConfig(brightness_contrast_p=1.0, noise_p=1.0, blur_p=1.0), image_size=200, train=True, seed=1
    )
    plain = DetectionDataset(records[:1], NEU_DET_CLASSES, image_size=200)
    augmented = DetectionDataset(records[:1], NEU_DET_CLASSES, image_size=200, transform=transform)
    before = plain[0][0]
    assert not torch.equal(augmented[0][0], before)
    augmented.transform = None
    assert torch.equal(augmented[0][0], before)


def test_missing_path_is_named(records):
    missing = ImageRecord(name="crazing_9999.jpg", width=200, height=200, path=None)
    with pytest.raises(DatasetError, match="crazing_9999.jpg"):
        DetectionDataset([records[0], missing], NEU_DET_CLASSES)
    with pytest.raises(DatasetError, match="crazing_9999.jpg"):
        DetectionDataset([records[0], missing], NEU_DET_CLASSES, preload=False)


def test_nonexistent_file_is_named(records, tmp_path):
    gone = ImageRecord(name="gone.jpg", width=200, height=200, path=tmp_path / "gone.jpg")
    with pytest.raises(DatasetError, match="gone.jpg"):
        DetectionDataset([records[0], gone], NEU_DET_CLASSES)


def test_unreadable_file_is_named(records, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    rec = ImageRecord(name="broken.jpg", width=200, height=200, path=broken)
    with pytest.raises(DatasetError, match="broken.jpg"):
        DetectionDataset([records[0], rec], NEU_DET_CLASSES)
    lazy = DetectionDataset([records[0], rec], NEU_DET_CLASSES, preload=False)
    lazy[0]
    with pytest.raises(DatasetError, match="broken.jpg"):
        lazy[1]


def test_unknown_label_is_an_error(records):
    rec = ImageRecord(
        name="crazing_1.jpg", width=200, height=200, boxes=(Box(1, 1, 50, 50, "rust"),), path=records[0].path
    )
    with pytest.raises(DatasetError, match="'rust'"):
        DetectionDataset([rec], NEU_DET_CLASSES)


def test_size_mismatch_with_annotation_is_an_error(records):
    rec = ImageRecord(name="crazing_1.jpg", width=400, height=200, path=records[0].path)
    with pytest.raises(DatasetError, match="400x200"):
        DetectionDataset([rec], NEU_DET_CLASSES)


def test_boxes_past_the_border_are_clipped(records):
    box = Box(-3, 10, 210, 50, "crazing")
    rec = ImageRecord(name="crazing_1.jpg", width=200, height=200, boxes=(box,), path=records[0].path)
    _, target = DetectionDataset([rec], NEU_DET_CLASSES, image_size=100)[0]
    assert target["boxes"].tolist() == [[0.0, 5.0, 100.0, 25.0]]


def test_bad_arguments(records):
    with pytest.raises(DatasetError, match="in_channels"):
        DetectionDataset(records, NEU_DET_CLASSES, in_channels=2)
    with pytest.raises(DatasetError, match="twice"):
        class_index(["a", "b", "a"])
    assert class_index(NEU_DET_CLASSES)["scratches"] == 5


def _loader(ds: DetectionDataset, *, workers: int, seed: int) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=2,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_detection,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
    )


def test_dataloader_two_workers_collates_and_seeds_per_worker(records):
    # The same image four times: batch 0 comes from worker 0, batch 1 from worker 1. Without
    # per-worker reseeding both workers would replay the same augmentation stream.
    cfg = AugmentConfig(brightness_contrast_p=1.0, noise_p=1.0)
    transform = build_transform(cfg, image_size=96, train=True, seed=0)
    ds = DetectionDataset(
        [records[1]] * 4, NEU_DET_CLASSES, image_size=96, in_channels=3, transform=transform
    )

    def run() -> list[tuple[torch.Tensor, list[dict]]]:
        return list(_loader(ds, workers=2, seed=7))

    first, second = run(), run()
    assert len(first) == 2
    for images, targets in first:
        assert images.shape == (2, 3, 96, 96) and images.dtype == torch.float32
        assert len(targets) == 2
        for t in targets:
            assert t["boxes"].shape == (len(records[1].boxes), 4)
            assert bool((t["boxes"] >= 0).all() and (t["boxes"] <= 96).all())
    assert [t["image_id"] for _, ts in first for t in ts] == [0, 1, 2, 3]
    assert not torch.equal(first[0][0], first[1][0])  # workers differ
    for (a, _), (b, _) in zip(first, second, strict=True):
        assert torch.equal(a, b)  # same loader seed, same augmentation


def test_dataloader_no_workers_matches_direct_indexing(records):
    ds = DetectionDataset(records, NEU_DET_CLASSES, image_size=64)
    batches = list(_loader(ds, workers=0, seed=0))
    assert [images.shape[0] for images, _ in batches] == [2, 2]
    assert torch.equal(batches[1][0][0], ds[2][0])
    assert torch.equal(batches[1][1][1]["boxes"], ds[3][1]["boxes"])
