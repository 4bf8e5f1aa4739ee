"""``steel train | eval | predict | export`` end to end on real NEU-DET files: a tiny model trained by the
CLI itself is evaluated, run on an image and exported; bad input exits non-zero with a useful message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from datasets.model import NEU_DET_CLASSES
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT
from datasets.split import make_split, write_split
from inspection.cli import app

CONFIG = REPO_ROOT / "configs" / "train" / "yolo_n.yaml"
TINY = [
    "data.subset=8",
    "train.epochs=1",
    "train.max_steps=2",
    "train.batch_size=4",
    "train.eval_every=1",
    "train.threads=1",
    "model.image_size=64",
]
IMAGE = "patches_1.jpg"  # 200 x 200

runner = CliRunner()


def steel(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture(autouse=True, scope="module")
def _restore_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(neu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``steel train`` on 8 images for 2 steps: the bundle the other commands use."""
    out = tmp_path_factory.mktemp("cli") / "run"
    result = steel("train", CONFIG, *sets(*TINY, f"train.out_dir={out}"))
    assert result.exit_code == 0, result.output
    assert "best val mAP@0.5" in result.stdout
    assert (out / "bundle" / "manifest.json").is_file()
    return out / "bundle"


@pytest.fixture(scope="module")
def small_voc(neu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """8 real VOC files (a few per class) and a split of them with 4 validation images."""
    folder = tmp_path_factory.mktemp("voc")
    annotations = folder / "annotations"
    annotations.mkdir()
    for cls in ("crazing", "patches", "scratches", "inclusion"):
        for xml in sorted((neu_root / "annotations").glob(f"{cls}_*.xml"))[:2]:
            shutil.copy(xml, annotations / xml.name)
    aset = read_dataset(annotations, images_dir=neu_root / "images", class_names=NEU_DET_CLASSES)
    assert len(aset.images) == 8 and not aset.problems
    split = make_split(aset, val_fraction=0.5, seed=0)
    assert len(split.val) == 4
    return annotations, write_split(split, folder / "split.json")


def test_eval_json_prints_one_metrics_object(trained: Path, small_voc: tuple[Path, Path], neu_root: Path):
    annotations, split = small_voc
    result = steel(
        "eval", "--model", trained, "--data", annotations, "--images", neu_root / "images", "--split", split,
        "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert metrics["images"] == 4
    for key in ("map50", "map50_95"):
        assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
    assert list(metrics["per_class"]) == list(NEU_DET_CLASSES)
    for name, values in metrics["per_class"].items():
        assert {"ap50", "ap"} <= set(values), name
    # Classes absent from the 4 validation images have no AP (null), never a made-up 0.
    assert metrics["per_class"]["rolled-in_scale"]["ap50"] is None
    # Line-level figures at the bundle's operating point: 4 defective validation images.
    assert metrics["defective_images"] == 4
    assert metrics["reject_recall"] == metrics["rejected_defective_images"] / 4
    assert metrics["reject_recall_per_class"]["rolled-in_scale"] is None
    assert metrics["stray_per_100_images"] == metrics["stray_detections"] * 100 / 4
    assert set(metrics["operating_point"]) == set(NEU_DET_CLASSES)


def test_eval_without_json_prints_a_table(trained: Path, small_voc: tuple[Path, Path], neu_root: Path):
    annotations, split = small_voc
    result = steel("eval", "--model", trained, "--data", annotations, "--images", neu_root / "images",
                   "--split", split, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 images" in result.stdout and "mAP@0.5" in result.stdout and "crazing" in result.stdout
    assert "reject recall" in result.stdout and "per 100 images" in result.stdout


def test_eval_of_a_missing_bundle_fails_clearly(tmp_path: Path, small_voc: tuple[Path, Path]):
    result = steel("eval", "--model", tmp_path / "nope", "--data", small_voc[0], "--json")
    assert result.exit_code == 1
    assert "no model bundle manifest" in result.stderr


def test_predict_json_gives_detections_in_source_pixels(trained: Path, neu_root: Path):
    image = neu_root / "images" / IMAGE
    result = steel("predict", "--model", trained, image, "--conf", "0.001", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == json.loads((trained / "manifest.json").read_text())["version"]
    (item,) = out["images"]
    assert item["image"] == str(image)
    assert item["detections"], "a 0.001 threshold keeps the top-scoring candidates"
    for det in item["detections"]:
        assert det["class"] in NEU_DET_CLASSES and det["score"] >= 0.001
        x1, y1, x2, y2 = det["xyxy"]
        assert 0 <= x1 <= x2 <= 200 and 0 <= y1 <= y2 <= 200


def test_predict_of_an_unreadable_image_fails_clearly(trained: Path, tmp_path: Path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    result = steel("predict", "--model", trained, bad)
    assert result.exit_code == 1 and "cannot decode image" in result.stderr


def test_train_config_error_exits_2_naming_the_key(tmp_path: Path):
    result = steel("train", CONFIG, "--set", "train.optimizer.lr=-0.1", "--set", f"train.out_dir={tmp_path}")
    assert result.exit_code == 2
    assert "train.optimizer.lr" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was started


def test_validate_config_checks_without_training(tmp_path: Path):
    result = steel("train", CONFIG, "--validate-config", "--set", f"train.out_dir={tmp_path / 'run'}")
    assert result.exit_code == 0 and "ok" in result.stdout
    assert not (tmp_path / "run").exists()


def test_train_resume_continues_the_run(neu_root: Path, tmp_path: Path):
    out = tmp_path / "run"
    first = steel("train", CONFIG, *sets(*TINY, f"train.out_dir={out}", "train.epochs=2"))
    assert first.exit_code == 0, first.output
    # Extend the finished 2-epoch run to 3 epochs: --resume picks up last.pt and runs epoch 3 only.
    again = steel("train", CONFIG, *sets(*TINY, f"train.out_dir={out}", "train.epochs=3"), "--resume")
    assert again.exit_code == 0, again.output
    assert "resumed from" in again.stdout and "at epoch 2" in again.stdout
    history = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]


def test_export_writes_an_onnx_file(trained: Path, tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    result = steel("export", "--model", trained, "--out", out)
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(None, {"images": torch.zeros(2, 1, 64, 64).numpy()})
    assert boxes.shape[0] == 2 and boxes.shape[2] == 4 and scores.shape[2] == len(NEU_DET_CLASSES)


def test_export_rejects_unknown_formats(trained: Path, tmp_path: Path):
    result = steel("export", "--model", trained, "--format", "tflite", "--out", tmp_path / "m.tflite")
    assert result.exit_code == 2 and "'tflite' is not supported" in result.stderr
