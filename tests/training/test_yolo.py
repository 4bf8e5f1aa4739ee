"""The from-scratch YOLO: sizes, the detector contract on real NEU-DET images, the task-aligned assigner,
CIoU, distribution focal loss and postprocess against known answers, and an overfit sanity check."""

from __future__ import annotations

import math

import pytest
import torch

from datasets.model import NEU_DET_CLASSES
from tests.training.neu_samples import load_neu_batch
from tests.training.tiny_bundle import tiny_yolo_bundle
from training.bundle import load_bundle
from training.inference import Predictor
from training.models.yolo.head import decode_distances
from training.models.yolo.loss import (
    TaskAlignedAssigner,
    box_ciou,
    distribution_focal_loss,
    pad_targets,
)
from training.models.yolo.model import P2_STRIDES, STRIDES, YoloConfig, build_yolo
from training.models.yolo.postprocess import postprocess

SIZE = 96
NUM_CLASSES = len(NEU_DET_CLASSES)
NAMES = ("patches_1", "scratches_10")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def neu_batch(*, size: int = SIZE, channels: int = 1) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    return load_neu_batch(NAMES, size=size, channels=channels)


def empty_target() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- sizes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "low", "high", "stem"),
    [("n", 2.9e6, 3.1e6, 16), ("s", 11.0e6, 11.3e6, 32)],  # YOLOv8n/s: 3.2M/11.2M with 80 classes
)
def test_parameter_counts_match_the_yolov8_scales(size: str, low: float, high: float, stem: int):
    gray, rgb = (
        build_yolo(YoloConfig(size=size), num_classes=NUM_CLASSES, in_channels=c, image_size=SIZE)
        for c in (1, 3)
    )
    assert low < n_params(gray) < high
    # Only the stem's 3x3 conv sees the input: two more input channels cost 2 * 9 * stem weights.
    assert n_params(rgb) - n_params(gray) == 2 * 9 * stem


def test_image_size_must_be_a_multiple_of_the_largest_stride():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_yolo(YoloConfig(), num_classes=NUM_CLASSES, in_channels=1, image_size=100)


# --- the detector contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_train_mode_returns_finite_losses_that_backpropagate(channels: int):
    model = build_yolo(YoloConfig(), num_classes=NUM_CLASSES, in_channels=channels, image_size=SIZE)
    images, targets = neu_batch(channels=channels)
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"box", "cls", "dfl"}
    assert all(v.ndim == 0 and torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone.stem.conv.weight.grad.abs().sum() > 0


def test_train_mode_without_targets_is_an_error():
    model = build_yolo(YoloConfig(), num_classes=NUM_CLASSES, in_channels=1, image_size=SIZE).train()
    with pytest.raises(ValueError, match="needs targets"):
        model(torch.zeros(1, 1, SIZE, SIZE))


def test_eval_mode_returns_detections_inside_the_image():
    model = build_yolo(YoloConfig(), num_classes=NUM_CLASSES, in_channels=1, image_size=SIZE).eval()
    images, _ = neu_batch()
    with torch.inference_mode():
        outputs = model(images)
    assert len(outputs) == len(images)
    for out in outputs:
        assert set(out) == {"boxes", "scores", "labels"}
        k = len(out["scores"])
        assert 0 < k <= model.cfg.max_detections
        assert out["boxes"].shape == (k, 4) and out["labels"].shape == (k,)
        assert out["labels"].dtype == torch.int64
        assert ((out["labels"] >= 0) & (out["labels"] < NUM_CLASSES)).all()
        boxes = out["boxes"]
        assert (boxes >= 0).all() and (boxes <= SIZE).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        scores = out["scores"]
        assert ((scores > model.cfg.score_threshold) & (scores <= 1)).all()
        assert torch.equal(scores, scores.sort(descending=True).values)


def test_raw_outputs_cover_every_anchor_of_the_three_levels():
    model = build_yolo(YoloConfig(), num_classes=NUM_CLASSES, in_channels=1, image_size=SIZE).eval()
    with torch.inference_mode():
        boxes, scores = model.raw(torch.rand(3, 1, SIZE, SIZE))
    anchors = sum((SIZE // s) ** 2 for s in STRIDES)
    assert boxes.shape == (3, anchors, 4)
    assert scores.shape == (3, anchors, NUM_CLASSES)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_a_p2_level_adds_stride_4_anchors_and_leaves_the_other_levels_heads_as_they_were():
    plain = build_yolo(YoloConfig(), num_classes=NUM_CLASSES, in_channels=1, image_size=SIZE).eval()
    fine = build_yolo(YoloConfig(p2=True), num_classes=NUM_CLASSES, in_channels=1, image_size=SIZE).eval()
    with torch.inference_mode():
        boxes, scores = fine.raw(torch.rand(2, 1, SIZE, SIZE))
    assert fine.head.strides == P2_STRIDES == (4, *STRIDES)
    assert boxes.shape == (2, sum((SIZE // s) ** 2 for s in P2_STRIDES), 4)
    assert scores.shape == (2, boxes.shape[1], NUM_CLASSES)
    for level, branch in enumerate(plain.head.cls_branches):  # same widths at strides 8/16/32
        shapes = [t.shape for t in branch.state_dict().values()]
        assert shapes == [t.shape for t in fine.head.cls_branches[level + 1].state_dict().values()]
    # the stride-4 boxes can be small: a P2 anchor's box is at most 4 * (reg_max - 1) px from its centre
    assert (boxes[:, : (SIZE // 4) ** 2, 2:] - boxes[:, : (SIZE // 4) ** 2, :2]).max() <= 2 * 4 * 15 + 1e-3


def test_a_p2_model_exports_to_onnx_runtime_with_the_same_raw_outputs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = build_yolo(YoloConfig(p2=True), num_classes=NUM_CLASSES, in_channels=1, image_size=SIZE).eval()

    class Raw(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.model.raw(images)

    images, _ = neu_batch()
    path = tmp_path / "p2.onnx"
    torch.onnx.export(
        Raw().eval(), (images,), str(path), dynamo=False, opset_version=17, input_names=["images"]
    )
    session = ort.InferenceSession(str(path))
    got_boxes, got_scores = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    with torch.inference_mode():
        boxes, scores = model.raw(images)
    assert got_boxes.shape == tuple(boxes.shape)
    assert abs(got_boxes - boxes.numpy()).max() < 1e-2 and abs(got_scores - scores.numpy()).max() < 1e-4


def test_a_p2_bundle_reloads_as_a_p2_model_and_predicts_on_real_images(tmp_path):
    bundle_dir = tiny_yolo_bundle(tmp_path / "p2", size=SIZE, score=0.001, p2=True)
    bundle = load_bundle(bundle_dir, device="cpu")
    assert bundle.model_config.yolo.p2 and bundle.model.head.strides == P2_STRIDES
    images, _ = neu_batch()
    detections = Predictor(bundle, device="cpu", backend="torch")(
        [(im[0] * 255).byte().numpy() for im in images]
    )
    assert len(detections) == 2 and all(len(d) > 0 for d in detections)


def test_images_without_boxes_are_legal_in_a_batch():
    model = build_yolo(YoloConfig(), num_classes=NUM_CLASSES, in_channels=1, image_size=SIZE).train()
    images, targets = neu_batch()
    mixed = model(images, [targets[0], empty_target()])
    assert all(torch.isfinite(v) for v in mixed.values())

    none = model(images, [empty_target(), empty_target()])
    assert float(none["box"].detach()) == 0.0 and float(none["dfl"].detach()) == 0.0
    assert float(none["cls"].detach()) > 0  # every anchor is pushed towards background
    sum(none.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# --- assigner ----------------------------------------------------------------------------------------


def grid_anchors(cells: int, stride: float) -> torch.Tensor:
    """(cells*cells, 2) cell centres in pixels, row-major."""
    centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * stride
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack((xs, ys), dim=-1).reshape(-1, 2)


def boxes_around(points: torch.Tensor, half: float) -> torch.Tensor:
    return torch.cat((points - half, points + half), dim=-1)


def assign(assigner, points, pred_boxes, gt_boxes: list[list[float]], gt_labels: list[int]):
    anchors = len(points)
    scores = torch.full((1, anchors, NUM_CLASSES), 0.5)
    targets = [{"boxes": torch.tensor(gt_boxes).reshape(-1, 4), "labels": torch.tensor(gt_labels)}]
    labels, boxes, mask = pad_targets(targets, torch.device("cpu"))
    return assigner(scores, pred_boxes[None], points, labels, boxes, mask)


def test_assigner_positives_lie_inside_the_ground_truth_box():
    points = grid_anchors(8, 8.0)  # centres 4, 12, ..., 60 on a 64 px image
    gt = [16.0, 16.0, 40.0, 48.0]
    inside = (points[:, 0] > 16) & (points[:, 0] < 40) & (points[:, 1] > 16) & (points[:, 1] < 48)
    assert int(inside.sum()) == 12  # x in {20, 28, 36}, y in {20, 28, 36, 44}
    pred = boxes_around(points, 8.0)

    result = assign(TaskAlignedAssigner(num_classes=NUM_CLASSES, topk=20), points, pred, [gt], [3])
    assert torch.equal(result.fg_mask[0], inside)
    assert (result.labels[0][inside] == 3).all() and (result.labels[0][~inside] == NUM_CLASSES).all()
    assert torch.equal(result.boxes[0][inside], torch.tensor(gt).expand(12, 4))
    assert (result.scores[0][~inside] == 0).all()
    assert (result.scores[0][inside][:, [0, 1, 2, 4, 5]] == 0).all()
    # TOOD normalisation: the best-aligned anchor's soft target is the best IoU among positives.
    best_iou = max(_iou(box, gt) for box in pred[inside].tolist())
    assert float(result.scores[0][:, 3].max()) == pytest.approx(best_iou, abs=1e-5)

    top4 = assign(TaskAlignedAssigner(num_classes=NUM_CLASSES, topk=4), points, pred, [gt], [3])
    assert int(top4.fg_mask.sum()) == 4
    assert not (top4.fg_mask[0] & ~inside).any()


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


@pytest.mark.parametrize("winner", [0, 1])
def test_assigner_gives_an_anchor_inside_two_boxes_to_the_one_it_overlaps_most(winner: int):
    points = grid_anchors(8, 8.0)
    gts = [[0.0, 0.0, 40.0, 40.0], [16.0, 16.0, 64.0, 64.0]]
    labels = [1, 2]
    shared = int(((points - torch.tensor([28.0, 28.0])).abs().sum(-1) == 0).nonzero())
    pred = boxes_around(points, 8.0)
    pred[shared] = torch.tensor(gts[winner])  # IoU 1 with the winner, 0.17 with the other box

    result = assign(TaskAlignedAssigner(num_classes=NUM_CLASSES, topk=64), points, pred, gts, labels)
    assert bool(result.fg_mask[0, shared])
    assert int(result.labels[0, shared]) == labels[winner]
    assert result.boxes[0, shared].tolist() == gts[winner]
    assert float(result.scores[0, shared, labels[1 - winner]]) == 0.0


def test_assigner_without_ground_truth_marks_everything_background():
    points = grid_anchors(4, 8.0)
    pred = boxes_around(points, 4.0)[None].expand(2, -1, -1)
    scores = torch.full((2, len(points), NUM_CLASSES), 0.5)
    assigner = TaskAlignedAssigner(num_classes=NUM_CLASSES)

    labels, boxes, mask = pad_targets([empty_target(), empty_target()], torch.device("cpu"))
    assert boxes.shape == (2, 0, 4)
    none = assigner(scores, pred, points, labels, boxes, mask)
    assert not none.fg_mask.any() and (none.labels == NUM_CLASSES).all() and (none.scores == 0).all()

    # A padded batch: image 1 has no boxes while image 0 has one.
    one = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0]]), "labels": torch.tensor([4])}
    labels, boxes, mask = pad_targets([one, empty_target()], torch.device("cpu"))
    mixed = assigner(scores, pred, points, labels, boxes, mask)
    assert mixed.fg_mask[0].any()
    assert not mixed.fg_mask[1].any() and (mixed.labels[1] == NUM_CLASSES).all()
    assert (mixed.scores[1] == 0).all()


# --- box and distribution losses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([10.0, 20.0, 50.0, 40.0], [10.0, 20.0, 50.0, 40.0], 1.0),  # identical
        ([0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 3.0], 0.25),  # same centre and aspect: CIoU == IoU
        ([0.0, 0.0, 2.0, 2.0], [4.0, 0.0, 6.0, 2.0], -0.4),  # disjoint: -centre^2/diagonal^2 = -16/40
    ],
)
def test_ciou_known_answers(a: list[float], b: list[float], expected: float):
    value = box_ciou(torch.tensor([a]), torch.tensor([b]))
    assert float(value[0]) == pytest.approx(expected, abs=1e-6)


def test_ciou_penalises_a_different_aspect_ratio_beyond_iou():
    a, b = torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[0.0, 0.0, 4.0, 2.0]])
    assert float(box_ciou(a, b)[0]) < _iou(a[0].tolist(), b[0].tolist()) - 0.01


def peaked_logits(reg_max: int, probs: dict[int, float]) -> torch.Tensor:
    """(1, 4*reg_max) logits whose softmax puts ``probs`` on the given bins (all four sides alike)."""
    p = torch.full((reg_max,), 1e-9)
    for bin_index, value in probs.items():
        p[bin_index] = value
    return p.log().repeat(4)[None]


@pytest.mark.parametrize("target", [3.0, 5.3, 12.75])
def test_dfl_is_smallest_at_the_target_bins(target: float):
    reg_max = 16
    side = torch.full((1, 4), target)
    per_bin = torch.stack(
        [distribution_focal_loss(peaked_logits(reg_max, {k: 1.0}), side)[0] for k in range(reg_max)]
    )
    assert int(per_bin.argmin()) == round(target)
    left, w_right = int(target), target - int(target)
    best = {left: 1 - w_right, left + 1: w_right} if w_right else {left: 1.0}
    optimum = distribution_focal_loss(peaked_logits(reg_max, best), side)[0]
    entropy = -sum(p * math.log(p) for p in best.values())
    assert float(optimum) == pytest.approx(entropy, abs=1e-4)
    assert float(optimum) < float(per_bin.min()) + 1e-6
    # The decoded expectation of the optimal distribution is the target distance itself.
    decoded = decode_distances(peaked_logits(reg_max, best)[None], reg_max)
    assert decoded[0, 0].tolist() == pytest.approx([target] * 4, abs=1e-4)


# --- postprocess -------------------------------------------------------------------------------------


def test_postprocess_suppresses_within_a_class_but_not_across_classes():
    boxes = torch.tensor([[[10.0, 10.0, 50.0, 50.0], [12.0, 12.0, 52.0, 52.0], [70.0, 70.0, 120.0, 90.0]]])
    scores = torch.zeros((1, 3, NUM_CLASSES))
    scores[0, 0, 2] = 0.9
    scores[0, 1, 2] = 0.8  # same class, IoU 0.82 with anchor 0: suppressed
    scores[0, 1, 4] = 0.7  # the same box as another class: kept (multi-label)
    scores[0, 2, 5] = 0.6  # reaches past the 96 px image: clipped
    (out,) = postprocess(boxes, scores, image_hw=(96, 96), conf_threshold=0.5, iou_threshold=0.6)
    assert out["labels"].tolist() == [2, 4, 5]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert out["boxes"].tolist() == [[10, 10, 50, 50], [12, 12, 52, 52], [70, 70, 96, 90]]


# --- learning --------------------------------------------------------------------------------------


@pytest.mark.parametrize("p2", [False, True], ids=["p3-p5", "p2-p5"])
def test_overfits_two_real_images(p2: bool):
    model = build_yolo(YoloConfig(p2=p2), num_classes=NUM_CLASSES, in_channels=1, image_size=SIZE).train()
    images, targets = neu_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in history)
    assert sum(history[-3:]) / 3 < 0.4 * history[0], history
