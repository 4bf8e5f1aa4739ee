"""Faster R-CNN wrapper: the detector contract on real NEU-DET images, from-scratch builds, local weights."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18

from datasets.model import NEU_DET_CLASSES
from tests.training.neu_samples import load_neu, load_neu_batch
from training.models.faster_rcnn import FasterRCNNConfig, _group_norm, build_faster_rcnn

# Fewer sampled proposals than the defaults: the same code paths at a fraction of the CPU time.
LIGHT = {
    "box_batch_size_per_image": 32,
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100,
    "representation_size": 256,
}
LOSS_KEYS = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
NAMES = ("patches_1", "pitted_surface_1")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def batch(*, size: int, channels: int) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    return load_neu_batch(NAMES, size=size, channels=channels)


def test_real_targets_are_what_the_xml_says():
    _, target = load_neu("patches_1", size=200, channels=1)
    assert target["boxes"][0].tolist() == [42.0, 9.0, 106.0, 97.0]  # VOC 43,10,106,97 (1-based inclusive)
    assert target["labels"].tolist() == [NEU_DET_CLASSES.index("patches")] * 3


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("backbone", ["mobilenet_v3_fpn", "resnet18_fpn", "resnet50_fpn"])
def test_train_and_eval_follow_the_detector_contract(backbone: str, in_channels: int):
    size = 128
    model = build_faster_rcnn(
        FasterRCNNConfig(backbone=backbone, rpn_post_nms_top_n_test=100, **LIGHT),
        num_classes=6,
        in_channels=in_channels,
        image_size=size,
    )
    images, targets = batch(size=size, channels=in_channels)

    model.train()
    losses = model(images, targets)
    assert set(losses) == LOSS_KEYS
    assert all(loss.ndim == 0 and torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    stem = next(p for p in model.parameters() if p.ndim == 4)
    assert stem.shape[1] == in_channels
    assert stem.grad is not None and torch.isfinite(stem.grad).all() and stem.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for det in detections:
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].shape == (len(det["scores"]), 4)
        assert len(det["labels"]) > 0  # score threshold 0.001: a random head still proposes boxes
        assert det["labels"].dtype == torch.int64
        assert 0 <= det["labels"].min() and det["labels"].max() <= 5
        assert det["boxes"].min() >= 0 and det["boxes"].max() <= size
        assert (det["boxes"][:, 2:] >= det["boxes"][:, :2]).all()


@pytest.mark.parametrize(("norm", "layer"), [("group", torch.nn.GroupNorm), ("batch", torch.nn.BatchNorm2d)])
@pytest.mark.parametrize("backbone", ["mobilenet_v3_fpn", "resnet18_fpn"])
def test_norm_setting_picks_the_backbone_norm_layer(backbone: str, norm: str, layer: type):
    cfg = FasterRCNNConfig(backbone=backbone, norm=norm, **LIGHT)
    model = build_faster_rcnn(cfg, num_classes=6, in_channels=1, image_size=128).train()
    kinds = {type(m) for m in model.detector.backbone.body.modules()}
    assert layer in kinds and not kinds & {torch.nn.GroupNorm, torch.nn.BatchNorm2d} - {layer}
    assert (layer is torch.nn.GroupNorm) == any(
        isinstance(m, torch.nn.GroupNorm) for m in model.detector.backbone.fpn.modules()
    )
    if norm == "batch":  # the GroupNorm forward is covered by the contract test
        images, targets = batch(size=128, channels=1)
        assert all(torch.isfinite(loss) for loss in model(images, targets).values())


def test_eval_boxes_are_in_input_pixels_at_native_200px():
    model = build_faster_rcnn(FasterRCNNConfig(), num_classes=6, in_channels=1, image_size=200).eval()
    transform = model.detector.transform
    assert (transform.min_size, transform.max_size) == ((200,), 200)  # never upscaled to torchvision's 800
    images, _ = batch(size=200, channels=1)
    with torch.no_grad():
        detections = model(images)
    boxes = torch.cat([d["boxes"] for d in detections])
    assert (
        boxes.max() <= 200 and boxes.max() > 100
    )  # some proposal reaches past the middle of the 200 px image


@pytest.fixture(scope="module")
def gray_model():
    """One MobileNetV3 model at 128 px for the tests that only run forward passes."""
    torch.manual_seed(0)
    return build_faster_rcnn(FasterRCNNConfig(**LIGHT), num_classes=6, in_channels=1, image_size=128)


def test_zero_box_targets_train(gray_model):
    model = gray_model.train()
    images, targets = batch(size=128, channels=1)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}

    mixed = model(images, [targets[0], empty])
    assert all(torch.isfinite(loss) for loss in mixed.values())

    none = model(images, [empty, empty])
    assert all(torch.isfinite(loss) for loss in none.values())
    assert none["loss_box_reg"].item() == 0.0 and none["loss_rpn_box_reg"].item() == 0.0
    sum(none.values()).backward()


def test_a_few_sgd_steps_overfit_two_images():
    # Fewer sampled proposals than the defaults keep 15 steps at a few seconds.
    cfg = FasterRCNNConfig(
        box_batch_size_per_image=32, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100
    )
    model = build_faster_rcnn(cfg, num_classes=6, in_channels=1, image_size=128).train()
    images, targets = batch(size=128, channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    totals = []
    for _ in range(12):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert all(math.isfinite(t) for t in totals)
    assert sum(totals[-3:]) / 3 < 0.6 * totals[0]


@pytest.mark.parametrize("label", [0, 5])
def test_class_indices_are_shifted_past_torchvision_background(gray_model, label: int):
    model = gray_model.train()
    assert model.detector.roi_heads.box_predictor.cls_score.out_features == 7  # 6 classes + background
    images, targets = batch(size=128, channels=1)
    relabelled = [{**t, "labels": torch.full_like(t["labels"], label)} for t in targets]
    losses = model(images, relabelled)
    # torchvision regresses boxes only for foreground labels: class 0 unshifted would count as background.
    assert losses["loss_box_reg"] > 0
    assert all(torch.isfinite(loss) for loss in losses.values())


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_local_weights_round_trip(tmp_path, suffix: str):
    cfg = FasterRCNNConfig(backbone="resnet18_fpn", **LIGHT)
    source = build_faster_rcnn(cfg, num_classes=6, in_channels=1, image_size=128)
    expected = source.state_dict()
    path = tmp_path / f"frcnn{suffix}"
    if suffix == ".pt":
        torch.save(expected, path)
    else:
        save_file({k: v.contiguous() for k, v in expected.items()}, str(path))

    torch.manual_seed(1)  # without the file, this build would differ from ``source``
    loaded = build_faster_rcnn(
        cfg.model_copy(update={"weights": str(path)}), num_classes=6, in_channels=1, image_size=128
    )
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())

    torch.manual_seed(1)
    fresh = build_faster_rcnn(cfg, num_classes=6, in_channels=1, image_size=128)
    stem = "detector.backbone.body.conv1.weight"
    assert not torch.equal(fresh.state_dict()[stem], expected[stem])


def test_weights_for_another_model_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "three_classes.pt"
    other = build_faster_rcnn(FasterRCNNConfig(), num_classes=3, in_channels=1, image_size=128)
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match="three_classes.pt"):
        build_faster_rcnn(FasterRCNNConfig(weights=str(path)), num_classes=6, in_channels=1, image_size=128)


@pytest.mark.parametrize("field", ["weights", "weights_backbone"])
def test_missing_weights_file_names_the_path(tmp_path, field: str):
    missing = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(FileNotFoundError, match="nowhere/model.pt"):
        build_faster_rcnn(
            FasterRCNNConfig(**{field: str(missing)}), num_classes=6, in_channels=1, image_size=128
        )


def test_rgb_backbone_weights_fold_into_a_gray_stem(tmp_path):
    classifier = resnet18(weights=None, norm_layer=_group_norm)
    path = tmp_path / "resnet18_gn.pt"
    torch.save(classifier.state_dict(), path)
    cfg = FasterRCNNConfig(backbone="resnet18_fpn", weights_backbone=str(path))
    model = build_faster_rcnn(cfg, num_classes=6, in_channels=1, image_size=128)
    body = model.detector.backbone.body
    assert torch.allclose(body.conv1.weight, classifier.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(body.layer3[0].conv1.weight, classifier.layer3[0].conv1.weight)


@pytest.mark.parametrize(
    ("cfg", "kwargs", "message"),
    [
        (FasterRCNNConfig(), {"in_channels": 2}, "in_channels must be 1 or 3"),
        (FasterRCNNConfig(image_mean=(0.5, 0.5)), {"in_channels": 3}, "image_mean: 2 values for 3"),
        (
            FasterRCNNConfig(backbone="resnet18_fpn", trainable_backbone_layers=6),
            {},
            "more than resnet18_fpn",
        ),
        (FasterRCNNConfig(anchor_sizes=((16,), (32,))), {}, "has 4 feature maps"),
    ],
)
def test_settings_that_do_not_fit_are_refused(cfg: FasterRCNNConfig, kwargs: dict, message: str):
    args = {"num_classes": 6, "in_channels": 1, "image_size": 128, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_faster_rcnn(cfg, **args)


def test_images_with_the_wrong_channel_count_are_refused(gray_model):
    model = gray_model.eval()
    images, _ = batch(size=128, channels=3)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(images)
