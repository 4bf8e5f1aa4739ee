"""Clean NEU-DET tiles as zero-box training images: only from training images, in the stated share."""

from __future__ import annotations

import pytest

from datasets.background import BackgroundRule, read_background, select_clean_tiles, write_tiles
from datasets.readers import read_dataset
from datasets.split import read_split
from datasets.torch_dataset import DetectionDataset
from training.background import background_records
from training.config import BackgroundConfig, DataConfig
from training.data import prepare_data

SPLIT = "configs/splits/neu-det-dev.json"


@pytest.fixture(scope="module")
def tiles_dir(neu_root, tmp_path_factory):
    aset = read_dataset(neu_root / "annotations")
    subset = aset.subset(
        [im.name for im in aset.images if im.name.startswith(("inclusion", "scratches"))][::4]
    )
    out = tmp_path_factory.mktemp("bg")
    write_tiles(select_clean_tiles(subset, BackgroundRule()), subset, out)
    return out


def test_background_records_come_only_from_training_images_in_the_stated_share(tiles_dir):
    split = read_split(SPLIT)
    records, info = background_records(
        BackgroundConfig(path=str(tiles_dir), share=0.2), train_sources=set(split.train), n_train=100
    )
    _, tiles = read_background(tiles_dir)
    from_train = {t.file for t in tiles if t.source in set(split.train)}
    assert len(records) == info["used"] == 25  # 0.2 of 125 images
    assert info["tiles_from_train_images"] == len(from_train) > 25
    assert all(r.boxes == () and r.path.is_file() for r in records)
    assert {r.name.removeprefix("background/") for r in records} <= from_train


def test_no_share_means_no_background(tiles_dir):
    records, info = background_records(
        BackgroundConfig(path=str(tiles_dir), share=0.0), train_sources={"x"}, n_train=100
    )
    assert records == [] and info == {}


def test_prepared_training_data_serves_background_tiles_as_zero_box_images(tiles_dir):
    cfg = DataConfig(split_file=SPLIT, background=BackgroundConfig(path=str(tiles_dir), share=0.1))
    data = prepare_data(cfg, out_dir=None, write=False)
    background = [r for r in data.train if r.name.startswith("background/")]
    assert len(background) == data.split_info["background"]["used"] == round(0.1 * 1152 / 0.9)
    assert len(data.val) == 288  # validation is untouched
    dataset = DetectionDataset(background[:3], data.class_names, image_size=224, preload=False)
    image, target = dataset[0]
    assert tuple(image.shape) == (1, 224, 224) and target["boxes"].shape == (0, 4)
