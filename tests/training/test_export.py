"""ONNX export of a YOLO bundle: onnxruntime gives the same raw boxes and scores as torch on real NEU-DET
images, and after our postprocess the same detections; exporting leaves the bundle's model usable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from datasets.settings import data_root
from training.bundle import Bundle, load_bundle
from training.config import ModelConfig
from training.export import export_onnx
from training.inference import read_image, to_model_input
from training.models.yolo.postprocess import postprocess

from .test_bundle import SIZE, make_bundle, trained_yolo

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# Not the images the model was trained on; three, so the dynamic batch axis is exercised.
NAMES = ("pitted_surface_1", "rolled-in_scale_1", "crazing_2")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Bundle, Path]:
    folder = tmp_path_factory.mktemp("export")
    bundle = load_bundle(make_bundle(folder / "bundle", trained_yolo()))
    return bundle, export_onnx(bundle, folder / "model.onnx")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    root = data_root()
    if not (root / "images").is_dir():
        pytest.skip(f"NEU-DET development split not found at {root} (set STEEL_DATA)")
    arrays = [
        to_model_input(read_image(str(root / "images" / f"{n}.jpg")), size=SIZE, channels=1) for n in NAMES
    ]
    return np.stack(arrays).astype(np.float32) / 255.0


def run_onnx(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    boxes, scores = session.run(["boxes", "scores"], {"images": images})
    return boxes, scores


def test_graph_has_named_inputs_and_a_dynamic_batch(exported: tuple[Bundle, Path]):
    _, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, SIZE, SIZE]


def test_export_leaves_the_bundle_model_in_eval_mode(exported: tuple[Bundle, Path]):
    # torch.onnx.export restores the mode it found on the module it was given: a wrapper left in train
    # mode put the bundle's model back into train mode (batch statistics, loss-only forward).
    bundle, _ = exported
    assert not bundle.model.training
    assert not any(m.training for m in bundle.model.modules())


def test_onnxruntime_matches_torch_on_real_images(exported: tuple[Bundle, Path], images: np.ndarray):
    bundle, path = exported
    onnx_boxes, onnx_scores = run_onnx(path, images)
    with torch.inference_mode():
        torch_boxes, torch_scores = bundle.model.raw(torch.from_numpy(images))
    assert onnx_boxes.shape == tuple(torch_boxes.shape) and onnx_boxes.shape[0] == len(NAMES)
    assert onnx_scores.shape == tuple(torch_scores.shape)
    np.testing.assert_allclose(onnx_boxes, torch_boxes.numpy(), atol=1e-3, rtol=0)  # pixels
    np.testing.assert_allclose(onnx_scores, torch_scores.numpy(), atol=1e-5, rtol=0)

    # Detection-level parity (after NMS) is tested on the shipped, trained model in test_backends.py: this
    # model has trained a dozen steps, its scores are nearly flat (~0.005), and NMS between candidates whose
    # scores differ by 1e-6 is decided by float rounding on either runtime (it failed on main that way).
    threshold = bundle.model.cfg.score_threshold
    ours = postprocess(torch_boxes, torch_scores, image_hw=(SIZE, SIZE), conf_threshold=threshold)
    with torch.inference_mode():
        full = bundle.model(torch.from_numpy(images))  # the eval-mode forward is raw() + postprocess
    assert sum(len(d["scores"]) for d in ours) > 0
    for a, c in zip(ours, full, strict=True):
        assert torch.equal(a["labels"], c["labels"])
        torch.testing.assert_close(a["boxes"], c["boxes"], atol=0, rtol=0)


def test_only_the_yolo_family_exports(tmp_path: Path):
    bundle = Bundle(
        path=tmp_path, manifest={}, model=nn.Identity(), model_config=ModelConfig(family="faster_rcnn")
    )
    with pytest.raises(ValueError, match="supports the yolo family"):
        export_onnx(bundle, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
