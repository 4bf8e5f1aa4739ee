"""Mosaic augmentation on real NEU-DET images: a training item holds parts of four images and their boxes,
drawn reproducibly from the pipeline's own seeded generator."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from datasets.augment import AugmentConfig, build_transform, mosaic_partners, reseed_transform
from datasets.model import NEU_DET_CLASSES
from datasets.torch_dataset import DetectionDataset
from tests.datasets.test_torch_dataset import neu_record

SIZE = 160
STEMS = ("crazing_1", "inclusion_10", "patches_1", "pitted_surface_1", "rolled-in_scale_1", "scratches_10")
OFF = dict(hflip_p=0.0, vflip_p=0.0, rot90_p=0.0, brightness_contrast_p=0.0, noise_p=0.0, blur_p=0.0)


def mosaic_dataset(stems=STEMS, *, seed: int = 0, p: float = 1.0) -> DetectionDataset:
    transform = build_transform(AugmentConfig(**OFF, mosaic_p=p), image_size=SIZE, train=True, seed=seed)
    return DetectionDataset(
        [neu_record(s) for s in stems], NEU_DET_CLASSES, image_size=SIZE, transform=transform
    )


def test_a_pipeline_asks_for_three_partner_images_only_when_mosaic_is_on():
    assert mosaic_partners(build_transform(AugmentConfig(), image_size=SIZE, train=True)) == 0
    on = build_transform(AugmentConfig(mosaic_p=0.5), image_size=SIZE, train=True)
    assert mosaic_partners(on) == 3
    assert [type(op).__name__ for op in on][:2] == ["Resize", "Mosaic"]  # before every other random op
    assert mosaic_partners(build_transform(AugmentConfig(mosaic_p=0.5), image_size=SIZE, train=False)) == 0


def test_a_mosaic_item_holds_boxes_of_other_classes_inside_the_input():
    ds = mosaic_dataset()
    mixed = 0
    for i, stem in enumerate(STEMS):
        image, target = ds[i]
        assert image.shape == (1, SIZE, SIZE)
        boxes = target["boxes"].numpy()
        assert ((boxes >= 0) & (boxes <= SIZE)).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        own = NEU_DET_CLASSES.index(stem.rsplit("_", 1)[0])
        mixed += int(any(label != own for label in target["labels"].tolist()))
    assert mixed >= len(STEMS) // 2  # each image is one class: other classes came from the partners


def test_the_same_seed_gives_the_same_mosaics_and_a_reseed_others():
    first, second = mosaic_dataset(seed=3), mosaic_dataset(seed=3)
    a, b = first[2], second[2]
    assert np.array_equal(a[0].numpy(), b[0].numpy()) and np.array_equal(a[1]["boxes"], b[1]["boxes"])
    reseed_transform(second.transform, 4)
    assert not np.array_equal(first[2][0].numpy(), second[2][0].numpy())


def test_a_set_of_one_image_makes_its_mosaic_from_itself():
    ds = mosaic_dataset(("scratches_10",))
    image, target = ds[0]
    assert image.shape == (1, SIZE, SIZE)
    assert set(target["labels"].tolist()) <= {NEU_DET_CLASSES.index("scratches")}


def test_a_mosaic_probability_out_of_range_is_named():
    with pytest.raises(ValidationError, match="mosaic_p"):
        AugmentConfig(mosaic_p=1.5)


def test_with_composites_off_an_item_is_its_own_image_and_boxes_and_back_on_it_is_a_mosaic_again():
    # close_mosaic_epochs: the last epochs see whole images; mosaic and copy-paste both certain here.
    transform = build_transform(AugmentConfig(**OFF, mosaic_p=1.0), image_size=SIZE, train=True, seed=0)
    records = [neu_record(s) for s in STEMS]
    ds = DetectionDataset(records, NEU_DET_CLASSES, image_size=SIZE, transform=transform, copy_paste=(1.0, 2))
    plain = DetectionDataset(records, NEU_DET_CLASSES, image_size=SIZE)
    ds.set_composites(False)
    for i in range(len(STEMS)):
        (image, target), (expected, truth) = ds[i], plain[i]
        assert np.array_equal(image.numpy(), expected.numpy())
        assert np.allclose(target["boxes"].numpy(), truth["boxes"].numpy(), atol=1e-3)  # float round trip
        assert target["labels"].tolist() == truth["labels"].tolist()
    ds.set_composites(True)
    assert any(ds[i][1]["boxes"].shape != plain[i][1]["boxes"].shape for i in range(len(STEMS)))
    assert not np.array_equal(ds[0][0].numpy(), plain[0][0].numpy())


def test_a_negative_close_mosaic_epochs_is_named():
    with pytest.raises(ValidationError, match="close_mosaic_epochs"):
        AugmentConfig(close_mosaic_epochs=-1)
