"""Clean NEU-DET tiles as zero-box training images: only from training images, in the stated share."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.background import BackgroundRule, read_background, select_clean_tiles, write_tiles
from datasets.detections import Detections
from datasets.readers import read_dataset
from datasets.split import read_split
from datasets.torch_dataset import DetectionDataset
from training.background import background_records, load_canvases, strays_on_real_crops
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


def test_only_strays_centred_on_the_real_crop_count_against_it_and_its_area_is_measured(tiles_dir):
    canvases = load_canvases(tiles_dir)[:2]
    side = canvases[0].image.shape[0]
    x1, y1, x2, y2 = canvases[0].crop_xyxy
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    on_crop = [cx - 5, cy - 5, cx + 5, cy + 5]
    in_padding = [0, 0, 6, 6]  # the mirrored corner: the crop is centred, never at (0, 0)
    weak_on_crop = on_crop
    first = Detections(np.array([on_crop, in_padding, weak_on_crop], np.float32), [0.9, 0.9, 0.1], [0, 1, 2])
    strays, area = strays_on_real_crops(canvases, [first, Detections.empty()], 0.5)
    assert strays == 1
    expected = sum((c.crop_xyxy[2] - c.crop_xyxy[0]) * (c.crop_xyxy[3] - c.crop_xyxy[1]) for c in canvases)
    assert area == pytest.approx(expected / side**2) and 0 < area < 2
