"""Model bundles: a round trip keeps predictions bit-identical; a manifest that disagrees with its
weights, a tampered weights file or a malformed manifest is a clear BundleError; nothing is unpickled."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from datasets.model import NEU_DET_CLASSES
from training.bundle import MANIFEST, BundleError, load_bundle, save_bundle, sha256_file
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import ModelConfig
from training.models.yolo.model import YoloConfig, build_yolo
from training.optim import OptimizerConfig, ScheduleConfig, build_optimizer, build_scheduler

from .neu_samples import load_neu

SIZE = 96
TRAIN_NAMES = ("patches_1", "scratches_10", "inclusion_2", "crazing_1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def real_images(names=TRAIN_NAMES, *, size: int = SIZE) -> tuple[torch.Tensor, list[dict]]:
    pairs = [load_neu(name, size=size) for name in names]
    return torch.stack([image for image, _ in pairs]), [target for _, target in pairs]


def trained_yolo(*, size: int = SIZE, steps: int = 12, yolo: YoloConfig | None = None) -> torch.nn.Module:
    """A YOLO-n trained a few steps on real NEU images, in eval mode: its outputs (and BatchNorm running
    statistics) are no longer those of the initialisation, so comparisons are not trivially equal."""
    torch.manual_seed(0)
    model = build_yolo(yolo or YoloConfig(), num_classes=len(NEU_DET_CLASSES), in_channels=1, image_size=size)
    images, targets = real_images(size=size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def make_bundle(out_dir: Path, model: torch.nn.Module, *, size: int = SIZE, yolo: YoloConfig | None = None):
    return save_bundle(
        out_dir,
        model,
        model_config=ModelConfig(family="yolo", image_size=size, in_channels=1, yolo=yolo or YoloConfig()),
        class_names=list(NEU_DET_CLASSES),
        version="test-e1",
        score_threshold=0.25,
        metrics={"map50": 0.5},
        split={"file": "split.json", "sha256": "ab" * 32},
    )


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    return trained_yolo()


@pytest.fixture
def bundle_dir(trained: torch.nn.Module, tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle", trained)


def edit_manifest(bundle_dir: Path, edit) -> None:
    path = bundle_dir / MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_round_trip_gives_identical_predictions(trained: torch.nn.Module, bundle_dir: Path):
    bundle = load_bundle(bundle_dir)
    assert not bundle.model.training
    images, _ = real_images(("pitted_surface_1", "rolled-in_scale_1"))
    with torch.inference_mode():
        expected, got = trained(images), bundle.model(images)
    assert any(len(out["scores"]) for out in expected)
    for a, b in zip(expected, got, strict=True):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(a[key], b[key]), key
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in bundle.model.state_dict().items())


def test_manifest_describes_the_model(bundle_dir: Path, trained: torch.nn.Module):
    bundle = load_bundle(bundle_dir)
    assert bundle.class_names == list(NEU_DET_CLASSES)
    assert (bundle.image_size, bundle.in_channels, bundle.score_threshold) == (SIZE, 1, 0.25)
    assert bundle.version == "test-e1"
    m = bundle.manifest
    assert m["architecture"]["family"] == "yolo" and m["architecture"]["yolo"]["size"] == "n"
    assert m["thresholds"]["nms_iou"] == YoloConfig().nms_iou
    assert m["weights"]["sha256"] == sha256_file(bundle_dir / "weights.safetensors")
    assert m["weights"]["parameters"] == sum(v.numel() for v in trained.state_dict().values())
    assert m["torch_version"] == torch.__version__ and m["code_version"]
    assert m["split"]["sha256"] == "ab" * 32 and m["metrics"]["map50"] == 0.5
    assert "normalisation" in m["input"]


def test_architecture_that_disagrees_with_the_weights_is_refused(bundle_dir: Path):
    # Size-s weights under a size-n manifest; the sha256 is updated so only the shapes can tell.
    bigger = build_yolo(YoloConfig(size="s"), num_classes=6, in_channels=1, image_size=SIZE)
    weights = bundle_dir / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in bigger.state_dict().items()}, str(weights))
    edit_manifest(bundle_dir, lambda m: m["weights"].update(sha256=sha256_file(weights)))
    with pytest.raises(BundleError, match="manifest architecture and weights disagree.*of another shape"):
        load_bundle(bundle_dir)


def test_class_names_that_disagree_with_the_head_are_refused(bundle_dir: Path):
    edit_manifest(bundle_dir, lambda m: m.update(class_names=m["class_names"][:5]))
    with pytest.raises(BundleError, match="disagree.*cls_branches"):
        load_bundle(bundle_dir)


def test_tampered_weights_are_refused(bundle_dir: Path):
    weights = bundle_dir / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 .* does not match manifest weights.sha256"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("class_names"), "field 'class_names' is missing"),
        (lambda m: m.update(format="other/9"), "format 'other/9' is not"),
        (lambda m: m["architecture"].update(image_size="big"), "architecture is invalid"),
        (
            lambda m: m["weights"].update(file="gone.safetensors"),
            "weights file named by the manifest is missing",
        ),
    ],
)
def test_malformed_manifests_are_refused(bundle_dir: Path, edit, message: str):
    edit_manifest(bundle_dir, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_missing_or_broken_manifest(tmp_path: Path, bundle_dir: Path):
    with pytest.raises(BundleError, match="no model bundle manifest"):
        load_bundle(tmp_path / "nowhere")
    (bundle_dir / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="malformed JSON"):
        load_bundle(bundle_dir)


def test_loading_a_bundle_never_unpickles(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a bundle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_bundle(bundle_dir).class_names == list(NEU_DET_CLASSES)


# --- checkpoints: weights_only ------------------------------------------------------------------------

RAN: list[str] = []


def _record(what: str) -> str:
    RAN.append(what)
    return what


class Payload:
    """Unpickling this calls ``_record``: a stand-in for code a hostile checkpoint would run."""

    def __reduce__(self):
        return (_record, ("payload ran",))


def _checkpoint_parts(model: torch.nn.Module):
    optimizer = build_optimizer(OptimizerConfig(), model)
    scheduler = build_scheduler(optimizer, total_steps=4, warmup_steps=1, cfg=ScheduleConfig())
    return {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": torch.amp.GradScaler("cuda", enabled=False),
        "ema": None,
    }


def test_checkpoints_load_with_weights_only(tmp_path: Path, trained: torch.nn.Module):
    path = tmp_path / "last.pt"
    save_checkpoint(path, epoch=3, history=[{"epoch": 1, "map50": 0.1}], **_checkpoint_parts(trained))
    assert torch.load(path, map_location="cpu", weights_only=True)["epoch"] == 3

    fresh = build_yolo(YoloConfig(), num_classes=6, in_channels=1, image_size=SIZE)
    state = load_checkpoint(path, **_checkpoint_parts(fresh))
    assert state["epoch"] == 3 and state["history"][0]["map50"] == 0.1
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in fresh.state_dict().items())


def test_checkpoint_with_arbitrary_objects_is_refused_without_running_them(tmp_path: Path):
    model = build_yolo(YoloConfig(), num_classes=6, in_channels=1, image_size=SIZE)
    path = tmp_path / "hostile.pt"
    torch.save({"model": model.state_dict(), "extra": Payload()}, path)
    RAN.clear()
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path, **_checkpoint_parts(model))
    assert RAN == []
