"""Copy-paste of defects on real NEU-DET images: the pasted pixels are the donor's box, the box and class
come along, clean tiles receive defects, and the draws follow the pipeline's seeded generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from datasets.augment import AugmentConfig, build_transform, reseed_transform
from datasets.copy_paste import Donor, covered_share, feather_mask, paste_defects
from datasets.model import NEU_DET_CLASSES
from datasets.torch_dataset import DatasetError, DetectionDataset
from tests.datasets.test_torch_dataset import neu_record

SIZE = 200
OFF = dict(hflip_p=0.0, vflip_p=0.0, rot90_p=0.0, brightness_contrast_p=0.0, noise_p=0.0, blur_p=0.0)
STEMS = ("scratches_10", "inclusion_10", "patches_1", "pitted_surface_1")


def dataset(*, seed: int = 0, p: float = 1.0, clean_first: bool = False) -> DetectionDataset:
    records = [neu_record(s) for s in STEMS]
    if clean_first:  # as a background tile: an image with no box
        records[0] = dataclasses.replace(records[0], boxes=())
    transform = build_transform(AugmentConfig(**OFF), image_size=SIZE, train=True, seed=seed)
    return DetectionDataset(records, NEU_DET_CLASSES, image_size=SIZE, transform=transform, copy_paste=(p, 2))


def test_the_feather_is_one_inside_and_falls_to_the_border():
    mask = feather_mask(20, 30, 3)
    assert mask.shape == (20, 30) and mask[10, 15] == 1.0
    assert mask[0, 15] < 0.2 and mask[10, 0] < 0.2 and mask[1, 15] < mask[2, 15] < mask[3, 15] <= 1.0


def test_a_pasted_defect_is_the_donors_box_with_its_class_and_lands_where_it_covers_least():
    rng = np.random.default_rng(0)
    target = np.full((SIZE, SIZE), 128, np.uint8)
    existing = np.array([[0, 0, 100, 200]], np.float32)  # the left half is taken
    donor_image = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    donor = Donor(donor_image, np.array([[20, 30, 60, 90]], np.float32), np.array([5]))
    image, boxes, labels = paste_defects(target, existing, np.array([2]), [donor], rng, feather_px=3)
    assert labels.tolist() == [2, 5] and len(boxes) == 2
    x0, y0, x1, y1 = boxes[1].astype(int)
    assert (x1 - x0, y1 - y0) == (40, 60) and 0 <= x0 and x1 <= SIZE and 0 <= y0 and y1 <= SIZE
    inner = image[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]
    assert np.array_equal(inner, donor_image[33:87, 23:57])  # past the feather: the donor's pixels
    assert covered_share(boxes[1], existing) < 0.5  # one of several positions, the least covering
    assert image[0, 0] == 128 and target[y0 + 10, x0 + 10] == 128  # the input is not written to


def test_a_clean_tile_in_the_training_set_receives_defects_of_the_others():
    ds = dataset(clean_first=True)
    image, target = ds[0]
    assert image.shape == (1, SIZE, SIZE)
    labels = target["labels"].tolist()
    assert 1 <= len(labels) <= 2  # from nothing: only pasted defects
    donors = {NEU_DET_CLASSES.index(s.rsplit("_", 1)[0]) for s in STEMS[1:]}
    assert set(labels) <= donors


def test_with_probability_zero_nothing_is_pasted_and_the_same_seed_pastes_the_same():
    plain = dataset(p=0.0)
    assert [len(plain[i][1]["labels"]) for i in range(len(STEMS))] == [
        len(neu_record(s).boxes) for s in STEMS
    ]
    a, b = dataset(seed=5), dataset(seed=5)
    assert np.array_equal(a[1][0].numpy(), b[1][0].numpy())
    reseed_transform(b.transform, 6)
    assert not all(np.array_equal(a[i][0].numpy(), b[i][0].numpy()) for i in range(len(STEMS)))


def test_copy_paste_without_a_training_pipeline_is_refused():
    with pytest.raises(DatasetError, match="copy_paste needs a training pipeline"):
        DetectionDataset([neu_record(STEMS[0])], NEU_DET_CLASSES, image_size=SIZE, copy_paste=(0.5, 2))
