"""The classical baseline on real NEU-DET images: the tile rule, the fit and the `steel classic` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datasets.model import Box
from datasets.readers import read_dataset
from datasets.split import apply_split, make_split, read_split, write_split
from datasets.texture.bundle import load_classic_bundle
from datasets.texture.settings import FeatureSettings
from inspection.cli import app
from training.classical.fit import fit_linear, label_indices
from training.classical.samples import feature_matrix, make_samples
from training.classical.tiles import TileRule, cut_tiles, grid_offsets

REPO = Path(__file__).resolve().parents[2]
DEV_SPLIT = REPO / "configs" / "splits" / "neu-det-dev.json"


@pytest.mark.parametrize(
    ("length", "tile", "stride", "expected"),
    [(160, 64, 32, [0, 32, 64, 96]), (200, 64, 64, [0, 64, 128, 136]), (64, 64, 32, [0]), (63, 64, 32, [])],
)
def test_grid_offsets_snap_the_last_tile_to_the_edge(
    length: int, tile: int, stride: int, expected: list
) -> None:
    assert grid_offsets(length, tile, stride) == expected


def test_tiles_near_a_box_are_neither_clean_nor_defect() -> None:
    rule = TileRule(tile_px=64, stride_px=32, margin_px=8, max_clean_per_image=99, max_defect_per_image=99)
    tiles = cut_tiles((Box(0, 0, 60, 60, "patches"),), 160, 160, rule)
    # box pixels 0..59 grown by 8 reach 67: only tiles starting at 96 in x or y are clean
    clean = {(t.x, t.y) for t in tiles if t.label == "clean"}
    assert clean == {(96, 0), (96, 32), (96, 64), (0, 96), (32, 96), (64, 96), (96, 96)}
    # (0, 0) is 3600/4096 covered; (32, 0) only 28 * 60 / 4096 = 41 % (< 50 %): ambiguous, left out
    assert [(t.x, t.y) for t in tiles if t.label == "defect"] == [(0, 0)]


def test_the_margin_is_exact_to_the_pixel() -> None:
    rule = TileRule(tile_px=8, stride_px=1, margin_px=3, max_clean_per_image=999, max_defect_per_image=0)
    tiles = cut_tiles((Box(0, 0, 10, 10, "x"),), 30, 8, rule)
    # box columns 0..9, so the first clean tile starts at column 10 + 3 = 13
    assert min(t.x for t in tiles) == 13


def test_an_image_without_boxes_gives_clean_tiles_only_and_a_small_image_none() -> None:
    rule = TileRule(tile_px=64, stride_px=64, max_clean_per_image=99)
    assert {t.label for t in cut_tiles((), 200, 200, rule)} == {"clean"}
    assert cut_tiles((), 63, 200, rule) == []


def _per_class(aset, per_class: int) -> list[str]:
    names: list[str] = []
    for cls in aset.class_names:
        names += [im.name for im in aset.images if im.name.startswith(cls)][:per_class]
    return names


@pytest.mark.slow
def test_a_classifier_fitted_on_few_real_images_is_far_above_chance(neu_root: Path) -> None:
    aset = read_dataset(neu_root / "annotations", images_dir=neu_root / "images")
    train_side, val_side = apply_split(aset, read_split(DEV_SPLIT))
    train_set = train_side.subset(_per_class(train_side, 15))
    val_set = val_side.subset(_per_class(val_side, 8))
    settings = FeatureSettings()
    classes = tuple(aset.class_names)
    sides = []
    for part in (train_set, val_set):
        samples = make_samples(part, "image-class")
        sides.append((feature_matrix(samples, settings), label_indices([s.label for s in samples], classes)))
    model = fit_linear(*sides[0], settings=settings, class_names=classes)
    accuracy = float(np.mean(model.predict(sides[1][0]) == sides[1][1]))
    assert len(sides[1][1]) == 48
    assert accuracy >= 0.7, accuracy  # chance is 1/6; the full split reaches > 0.95 (README)


@pytest.fixture(scope="module")
def small_neu(neu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six real images per class (annotations copied) and a split of them: fast CLI runs."""
    folder = tmp_path_factory.mktemp("small-neu") / "annotations"
    folder.mkdir()
    aset = read_dataset(neu_root / "annotations", images_dir=neu_root / "images")
    for name in _per_class(aset, 6):
        shutil.copy(neu_root / "annotations" / (Path(name).stem + ".xml"), folder)
    small = read_dataset(folder, images_dir=neu_root / "images")
    split = write_split(make_split(small, val_fraction=0.34, seed=0), folder.parent / "split.json")
    return folder, split


def _steel(*args: str | Path) -> dict:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_train_eval_and_predict_commands_on_real_images(
    small_neu: tuple[Path, Path], neu_root: Path, tmp_path: Path
) -> None:
    annotations, split = small_neu
    images = neu_root / "images"
    out = tmp_path / "neu-classic-small"
    trained = _steel(
        "classic",
        "train",
        "--data",
        annotations,
        "--images",
        images,
        "--split",
        split,
        "--out",
        out,
        "--json",
    )
    assert set(trained["ablation"]) == {"histogram", "glcm", "lbp", "hog", "edges"}
    assert all(0 <= v["only"] <= 1 and 0 <= v["without"] <= 1 for v in trained["ablation"].values())
    assert (out / "confusion_matrix.png").stat().st_size > 0 and (out / "manifest.json").is_file()
    evaluated = _steel(
        "classic",
        "eval",
        "--model",
        out,
        "--data",
        annotations,
        "--images",
        images,
        "--split",
        split,
        "--json",
    )
    matrix = np.array(evaluated["confusion_matrix"]["matrix"])
    assert evaluated["images"] == evaluated["samples"] == matrix.sum() == trained["metrics"]["samples"]
    assert evaluated["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum(), abs=1e-4)
    assert evaluated["accuracy"] == trained["metrics"]["accuracy"]  # the bundle predicts what the fit did
    assert set(evaluated["per_class"]) == set(load_classic_bundle(out).model.class_names)
    image = images / "scratches_10.jpg"
    predicted = _steel("classic", "predict", image, "--model", out, "--json")
    assert predicted["images"][0]["image"] == str(image)
    assert predicted["images"][0]["class"] in evaluated["per_class"]


def test_commands_report_a_hostile_bundle_without_a_traceback(tmp_path: Path, neu_root: Path) -> None:
    bundle = tmp_path / "evil"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"format": "steel-classic-bundle/1", "name": 3}))
    result = CliRunner().invoke(
        app, ["classic", "predict", str(neu_root / "images" / "crazing_1.jpg"), "--model", str(bundle)]
    )
    assert result.exit_code == 1
    assert "error:" in result.output and "manifest.json" in result.output and "Traceback" not in result.output


def test_a_missing_annotation_path_is_one_error_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-annotations"
    result = CliRunner().invoke(
        app, ["classic", "eval", "--model", str(REPO / "models" / "neu-classic"), "--data", str(missing)]
    )
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"error: {missing}: no such file or folder"], result.output
