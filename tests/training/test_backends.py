"""Inference backends: ONNX Runtime gives the shipped model's detections on real NEU-DET validation images
(boxes within 1 px, scores within 1e-3, same classes) as torch; the export is cached beside the bundle,
tied to its weights' sha256, so changed weights are exported again; a read-only bundle exports into the
cache folder; ``auto`` says why it picked torch for Faster R-CNN; int8 needs its own calibrated export."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

import training.backends as backends
from datasets.detections import Detections
from datasets.model import NEU_DET_CLASSES
from datasets.settings import REPO_ROOT, data_root
from inspection.config import InspectionConfig
from training.backends import choose_backend
from training.bundle import load_bundle, save_bundle
from training.cli import app
from training.config import ModelConfig
from training.inference import Predictor, read_image, to_model_input
from training.models.faster_rcnn import FasterRCNNConfig, build_faster_rcnn
from training.onnx_cache import export_name, weights_sha256
from training.quantize import quantize_int8

from .test_bundle import make_bundle, trained_yolo

pytest.importorskip("onnxruntime")
SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
SPLIT = REPO_ROOT / "configs" / "splits" / "neu-det-dev.json"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def val_images(count: int) -> list[np.ndarray]:
    """``count`` validation images of the development split, spread over the six classes."""
    root = data_root()
    if not (root / "images").is_dir():
        pytest.skip(f"NEU-DET development split not found at {root} (set STEEL_DATA)")
    names = [item["name"] for item in json.loads(SPLIT.read_text())["val"]]
    step = len(names) // count
    return [read_image(str(root / "images" / n)) for n in names[::step][:count]]


@pytest.fixture()
def shipped_copy(tmp_path: Path) -> Path:
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip(f"no shipped bundle at {SHIPPED}")
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name in ("manifest.json", "weights.safetensors"):
        shutil.copy(SHIPPED / name, folder / name)
    return folder


def assert_same_detections(ours: Detections, theirs: Detections) -> None:
    """Same count, and each box matched one to one with a box of the same class within 1 px and 1e-3."""
    assert len(ours) == len(theirs)
    unused = set(range(len(theirs)))
    for box, score, label in zip(ours.xyxy, ours.scores, ours.class_ids, strict=True):
        candidates = [j for j in unused if theirs.class_ids[j] == label]
        assert candidates, f"no {label} box left to match {box}"
        j = min(candidates, key=lambda k: float(np.abs(theirs.xyxy[k] - box).max()))
        assert np.abs(theirs.xyxy[j] - box).max() <= 1.0
        assert abs(float(theirs.scores[j]) - float(score)) <= 1e-3
        unused.remove(j)


@pytest.mark.parametrize("threshold", [None, 0.001])
def test_onnxruntime_gives_torchs_detections_on_real_neu_images(shipped_copy: Path, threshold: float | None):
    images = val_images(12)
    torch_pred = Predictor(str(shipped_copy), device="cpu", backend="torch", score_threshold=threshold)
    ort_pred = Predictor(str(shipped_copy), device="cpu", backend="onnxruntime", score_threshold=threshold)
    assert (torch_pred.backend, ort_pred.backend) == ("torch", "onnxruntime")
    ours, theirs = torch_pred(images), ort_pred(images)
    assert sum(len(d) for d in ours) >= 12  # the shipped model finds defects on these images
    for a, b in zip(ours, theirs, strict=True):
        assert_same_detections(a, b)
        assert len(a) == 0 or a.scores.min() >= torch_pred.score_threshold


def test_the_vectorised_step_matches_the_models_own_forward_one_image_at_a_time(shipped_copy: Path):
    # The batched decode + NMS (one call for the whole batch) must equal the eval-mode forward per image.
    predictor = Predictor(str(shipped_copy), device="cpu", backend="torch", score_threshold=0.0)
    images = val_images(6)
    batched = predictor(images)
    for image, det in zip(images, batched, strict=True):
        with torch.inference_mode():
            alone = predictor._torch_forward([image], np.stack([predictor_input(predictor, image)]))[0]
        assert len(det) == len(alone) > 0
        np.testing.assert_array_equal(det.class_ids, alone.class_ids)
        np.testing.assert_allclose(det.xyxy, alone.xyxy, atol=1e-4)
        np.testing.assert_allclose(det.scores, alone.scores, atol=1e-6)


def predictor_input(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    return to_model_input(image, size=predictor.size, channels=predictor.channels)


def test_the_export_is_cached_beside_the_bundle_and_reused(shipped_copy: Path):
    first = Predictor(str(shipped_copy), device="cpu", backend="onnxruntime")
    path = first._ort.path
    assert path.parent == shipped_copy and weights_sha256(first.bundle) in path.name
    stamp = path.stat().st_mtime_ns
    second = Predictor(str(shipped_copy), device="cpu", backend="onnxruntime")
    assert second._ort.path == path and path.stat().st_mtime_ns == stamp


def test_changed_weights_are_exported_again_and_the_stale_graph_is_removed(tmp_path: Path):
    folder = tmp_path / "bundle"
    make_bundle(folder, trained_yolo(steps=2))
    old = Predictor(str(folder), device="cpu", backend="onnxruntime")
    old_path = old._ort.path
    make_bundle(folder, trained_yolo(steps=12))  # a retrain written over the same folder
    new = Predictor(str(folder), device="cpu", backend="onnxruntime")
    assert new._ort.path != old_path and new._ort.path.is_file()
    assert not old_path.exists()  # the stale export is removed; the old session still runs from memory
    reference = Predictor(str(folder), device="cpu", backend="torch")
    batch = np.stack([predictor_input(new, im) for im in val_images(4)])
    ref_boxes, ref_scores = reference._raw(batch)
    new_boxes, new_scores = new._raw(batch)
    np.testing.assert_allclose(new_boxes, ref_boxes, atol=1e-3)
    np.testing.assert_allclose(new_scores, ref_scores, atol=1e-5)
    stale_scores = old._raw(batch)[1]
    assert np.abs(stale_scores - ref_scores).max() > 1e-3  # 100x the parity tolerance: the old graph differs


def _make_read_only(folder: Path) -> None:
    """Immutable when we are root (permission bits do not stop root), else no write permission."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode != 0:
        folder.chmod(0o555)


def _make_writable(folder: Path) -> None:
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
    folder.chmod(0o755)


def test_a_read_only_bundle_is_exported_into_the_cache_folder(
    shipped_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("STEEL_CACHE_DIR", str(cache))
    _make_read_only(shipped_copy)
    try:
        predictor = Predictor(str(shipped_copy), device="cpu", backend="onnxruntime")
        assert predictor._ort.path.parent == cache
        assert sorted(p.name for p in shipped_copy.iterdir()) == ["manifest.json", "weights.safetensors"]
        assert len(predictor(val_images(2))) == 2
    finally:
        _make_writable(shipped_copy)


def test_auto_runs_torch_and_says_why_when_the_export_cannot_be_written(
    shipped_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("STEEL_CACHE_DIR", str(cache))
    _make_read_only(shipped_copy)
    _make_read_only(cache)
    try:
        predictor = Predictor(str(shipped_copy), device="cpu", backend="auto")
        assert predictor.backend == "torch" and "onnxruntime failed" in predictor.backend_reason
        assert predictor.describe() == "torch cpu" and len(predictor(val_images(2))) == 2
        with pytest.raises(OSError):  # asked for by name: the failure is reported, not papered over
            Predictor(str(shipped_copy), device="cpu", backend="onnxruntime")
    finally:
        _make_writable(cache)
        _make_writable(shipped_copy)


def test_auto_picks_torch_for_faster_rcnn_and_says_why():
    choice = choose_backend("auto", family="faster_rcnn", device_type="cpu")
    assert choice.name == "torch" and "faster_rcnn" in choice.reason and "no ONNX export" in choice.reason
    assert choose_backend("auto", family="yolo", device_type="cpu").name == "onnxruntime"
    with pytest.raises(ValueError, match="yolo family only"):
        choose_backend("onnxruntime", family="faster_rcnn", device_type="cpu")
    with pytest.raises(ValueError, match="not one of auto, torch, onnxruntime"):
        choose_backend("tensorrt", family="yolo", device_type="cpu")


def test_auto_on_cuda_without_tensorrt_runs_torch(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(backends, "ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert choose_backend("auto", family="yolo", device_type="cuda").name == "torch"
    assert backends.session_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    options = backends.tensorrt_options(Path("/b/model.onnx"), (1, 224, 224), 32)
    assert options["trt_profile_min_shapes"] == "images:1x1x224x224"
    assert options["trt_profile_max_shapes"] == "images:32x1x224x224"


def test_int8_without_its_export_is_a_clear_error_naming_the_command(shipped_copy: Path):
    with pytest.raises(ValueError, match="no int8 export.*steel export --model"):
        Predictor(str(shipped_copy), device="cpu", backend="onnxruntime", int8=True)
    with pytest.raises(ValueError, match="onnxruntime backend only"):
        Predictor(str(shipped_copy), device="cpu", backend="torch", int8=True)


def test_int8_export_is_calibrated_cached_and_finds_the_same_defects_mostly(shipped_copy: Path):
    bundle = load_bundle(shipped_copy)
    path = quantize_int8(bundle, val_images(16))
    assert path.name == export_name(weights_sha256(bundle), "int8") and path.parent == shipped_copy
    int8 = Predictor(bundle, device="cpu", backend="onnxruntime", int8=True)
    fp32 = Predictor(str(shipped_copy), device="cpu", backend="onnxruntime")
    images = val_images(12)
    labels_int8 = sorted(int(c) for d in int8(images) for c in d.class_ids)
    labels_fp32 = sorted(int(c) for d in fp32(images) for c in d.class_ids)
    assert labels_fp32 and len(set(labels_int8) ^ set(labels_fp32)) <= 1
    assert abs(len(labels_int8) - len(labels_fp32)) <= max(2, len(labels_fp32) // 4)


def test_steel_predict_backend_option_gives_the_same_json_on_both_backends(shipped_copy: Path):
    root = data_root()
    names = [item["name"] for item in json.loads(SPLIT.read_text())["val"]][:3]
    paths = [str(root / "images" / n) for n in names]
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        result = CliRunner().invoke(
            app, ["predict", *paths, "--model", str(shipped_copy), "--backend", backend, "--json"]
        )
        assert result.exit_code == 0, result.output
        outputs[backend] = json.loads(result.output.strip().splitlines()[-1])
    for a, b in zip(outputs["torch"]["images"], outputs["onnxruntime"]["images"], strict=True):
        assert [d["class"] for d in a["detections"]] == [d["class"] for d in b["detections"]]
    bad = CliRunner().invoke(app, ["predict", *paths, "--model", str(shipped_copy), "--backend", "tvm"])
    assert bad.exit_code != 0 and "not one of auto, torch, onnxruntime" in bad.output


def test_the_daemon_config_names_the_key_of_an_unknown_backend():
    with pytest.raises(ValidationError, match=r"detector\.backend"):
        InspectionConfig.model_validate({"detector": {"backend": "tensorrt"}})
    assert (
        InspectionConfig.model_validate({"detector": {"backend": "torch", "int8": False}}).detector.backend
        == "torch"
    )


def test_a_faster_rcnn_bundle_runs_on_torch_under_auto_and_the_predictor_says_why(tmp_path: Path):
    config = ModelConfig(
        family="faster_rcnn",
        image_size=128,
        in_channels=1,
        faster_rcnn=FasterRCNNConfig(rpn_post_nms_top_n_test=50, representation_size=256),
    )
    torch.manual_seed(0)
    model = build_faster_rcnn(config.faster_rcnn, num_classes=6, in_channels=1, image_size=128)
    folder = save_bundle(
        tmp_path / "frcnn",
        model,
        model_config=config,
        class_names=list(NEU_DET_CLASSES),
        version="frcnn-test",
        score_threshold=0.0,
    )
    predictor = Predictor(str(folder), device="cpu", backend="auto", score_threshold=0.0)
    assert (
        predictor.backend == "torch" and "faster_rcnn family has no ONNX export" in predictor.backend_reason
    )
    detections = predictor(val_images(2))
    assert len(detections) == 2 and all(isinstance(d, Detections) for d in detections)
    assert not any(p.suffix == ".onnx" for p in folder.iterdir())


def test_weights_replaced_after_loading_never_lend_their_hash_to_the_loaded_models_export(tmp_path: Path):
    folder = tmp_path / "bundle"
    make_bundle(folder, trained_yolo(steps=2))
    loaded = load_bundle(folder)
    loaded_sha = loaded.manifest["weights"]["sha256"]
    make_bundle(folder, trained_yolo(steps=12))  # a retrain replaces the files after the model was loaded
    predictor = Predictor(loaded, device="cpu", backend="onnxruntime")
    assert loaded_sha in predictor._ort.path.name
    batch = np.stack([predictor_input(predictor, im) for im in val_images(2)])
    np.testing.assert_allclose(
        predictor._raw(batch)[1], Predictor(loaded, device="cpu", backend="torch")._raw(batch)[1], atol=1e-5
    )
    fresh = Predictor(str(folder), device="cpu", backend="onnxruntime")
    assert fresh._ort.path != predictor._ort.path
