"""Task-aligned assignment (TOOD, Feng et al. 2021) and the YOLO loss: BCE for classes, CIoU and
distribution focal loss (GFL, Li et al. 2020) for boxes. Written from the papers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from datasets.torch_dataset import Target
from training.models.yolo.head import HeadOutput, decode_distances, distances_to_boxes

EPS = 1e-9


def box_iou_pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes broadcast against each other: (..., 4) x (..., 4) -> (...)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + EPS)


def box_ciou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complete IoU (Zheng et al. 2020): IoU minus centre-distance and aspect-ratio penalties.

    (N,4) x (N,4) -> (N,)."""
    iou = box_iou_pairwise(a, b)
    wa, ha = (a[:, 2] - a[:, 0]).clamp(min=EPS), (a[:, 3] - a[:, 1]).clamp(min=EPS)
    wb, hb = (b[:, 2] - b[:, 0]).clamp(min=EPS), (b[:, 3] - b[:, 1]).clamp(min=EPS)
    enclose_wh = torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])
    diag2 = enclose_wh.pow(2).sum(-1) + EPS
    centre2 = ((a[:, :2] + a[:, 2:]) - (b[:, :2] + b[:, 2:])).pow(2).sum(-1) / 4
    v = (4 / math.pi**2) * (torch.atan(wb / hb) - torch.atan(wa / ha)).pow(2)
    with torch.no_grad():
        # (1 - iou) + v + EPS, not v - iou + (1 + EPS): in float32 1 + 1e-9 == 1, so identical boxes
        # (v == 0, iou == 1) gave 0 / 0 = NaN.
        alpha = v / ((1 - iou) + v + EPS)
    return iou - (centre2 / diag2 + v * alpha)


@dataclass(frozen=True)
class Assignment:
    """Per anchor: target class (B,A), box in pixels (B,A,4), soft class scores (B,A,C),
    foreground mask (B,A)."""

    labels: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    fg_mask: torch.Tensor


class TaskAlignedAssigner:
    """Picks, for each ground-truth box, the ``topk`` anchors inside it with the best
    ``score**alpha * iou**beta`` and gives them soft targets scaled by that alignment."""

    def __init__(self, *, num_classes: int, topk: int = 10, alpha: float = 0.5, beta: float = 6.0):
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,  # (B, A, C) probabilities
        pred_boxes: torch.Tensor,  # (B, A, 4) pixels
        anchor_points: torch.Tensor,  # (A, 2) pixels
        gt_labels: torch.Tensor,  # (B, M) long
        gt_boxes: torch.Tensor,  # (B, M, 4) pixels
        gt_mask: torch.Tensor,  # (B, M) bool: real boxes vs padding
    ) -> Assignment:
        batch, anchors, classes = pred_scores.shape
        max_boxes = gt_boxes.shape[1]
        device = pred_scores.device
        if max_boxes == 0:
            return Assignment(
                labels=torch.full((batch, anchors), classes, dtype=torch.long, device=device),
                boxes=torch.zeros((batch, anchors, 4), device=device, dtype=pred_boxes.dtype),
                scores=torch.zeros_like(pred_scores),
                fg_mask=torch.zeros((batch, anchors), dtype=torch.bool, device=device),
            )

        # (B, M, A): anchor centre strictly inside the ground-truth box.
        lt = anchor_points[None, None] - gt_boxes[:, :, None, :2]
        rb = gt_boxes[:, :, None, 2:] - anchor_points[None, None]
        in_gt = torch.cat((lt, rb), dim=-1).amin(-1) > EPS
        valid = in_gt & gt_mask[:, :, None]

        overlaps = box_iou_pairwise(gt_boxes[:, :, None, :], pred_boxes[:, None, :, :]) * valid
        label_idx = gt_labels.clamp(min=0)[:, :, None].expand(-1, -1, anchors)
        cls_scores = pred_scores.permute(0, 2, 1).gather(1, label_idx)  # (B, M, A)
        align = cls_scores.pow(self.alpha) * overlaps.pow(self.beta) * valid

        k = min(self.topk, anchors)
        topk_idx = align.topk(k, dim=-1).indices  # (B, M, k)
        in_topk = torch.zeros_like(align, dtype=torch.bool).scatter_(-1, topk_idx, True)
        positive = in_topk & valid  # (B, M, A)

        # An anchor claimed by several boxes goes to the one it overlaps most.
        claims = positive.sum(1)  # (B, A)
        if (claims > 1).any():
            best = overlaps.argmax(1)  # (B, A)
            best_onehot = F.one_hot(best, max_boxes).permute(0, 2, 1).bool()
            positive = torch.where((claims > 1)[:, None, :], best_onehot, positive)
        fg_mask = positive.any(1)
        gt_index = positive.float().argmax(1)  # (B, A)

        target_labels = gt_labels.gather(1, gt_index).clamp(min=0)
        target_boxes = gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))
        target_scores = F.one_hot(target_labels, classes).to(pred_scores.dtype) * fg_mask[..., None]

        align = align * positive
        norm = align * (overlaps * positive).amax(-1, keepdim=True)
        norm = (norm / (align.amax(-1, keepdim=True) + EPS)).amax(1)  # (B, A)
        target_labels = torch.where(fg_mask, target_labels, torch.full_like(target_labels, classes))
        return Assignment(target_labels, target_boxes, target_scores * norm[..., None], fg_mask)


def distribution_focal_loss(pred_dist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, 4*R) logits against (N, 4) continuous distances in bins: cross-entropy to the two
    neighbouring bins weighted by proximity; mean over the four sides -> (N,)."""
    reg_max = pred_dist.shape[-1] // 4
    logits = pred_dist.reshape(-1, reg_max)
    target = target.reshape(-1)
    left = target.long()
    right = left + 1
    weight_left = right.to(target.dtype) - target
    weight_right = 1 - weight_left
    loss = F.cross_entropy(logits, left, reduction="none") * weight_left
    loss = loss + F.cross_entropy(logits, right, reduction="none") * weight_right
    return loss.view(-1, 4).mean(-1)


def loss_normaliser(score_sum: torch.Tensor) -> torch.Tensor:
    """The divisor of every loss term: the batch's total target score (at least 1).

    Under DistributedDataParallel each rank holds a slice of the batch and gradients are averaged over
    ranks. Dividing by the rank's own total would weight the slices unequally; dividing by
    ``global total / world size`` makes the averaged gradient the single-process gradient of the whole
    batch. Only while gradients flow: then every rank runs the same step (a no-grad forward, such as
    rank 0's validation loss, must not wait on a collective the other ranks never join).
    """
    if torch.is_grad_enabled() and dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        if world > 1:
            total = score_sum.detach().clone()
            dist.all_reduce(total)
            return total.clamp(min=1.0) / world
    return score_sum.clamp(min=1.0)


def pad_targets(
    targets: list[Target], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """List of per-image targets -> labels (B,M), boxes (B,M,4), mask (B,M) padded to the largest M."""
    batch = len(targets)
    max_boxes = max((len(t["labels"]) for t in targets), default=0)
    labels = torch.full((batch, max_boxes), -1, dtype=torch.long, device=device)
    boxes = torch.zeros((batch, max_boxes, 4), dtype=torch.float32, device=device)
    for i, target in enumerate(targets):
        n = len(target["labels"])
        if n:
            labels[i, :n] = target["labels"].to(device)
            boxes[i, :n] = target["boxes"].to(device=device, dtype=torch.float32)
    return labels, boxes, labels >= 0


class YoloLoss:
    """Loss dict ``{box, cls, dfl}`` (weighted, mean per image) for a :class:`HeadOutput`."""

    def __init__(
        self,
        *,
        num_classes: int,
        reg_max: int,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        topk: int = 10,
    ):
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.gains = {"box": box_gain, "cls": cls_gain, "dfl": dfl_gain}
        self.assigner = TaskAlignedAssigner(num_classes=num_classes, topk=topk)

    def __call__(self, out: HeadOutput, targets: list[Target]) -> dict[str, torch.Tensor]:
        pred_dist = out.pred_dist.float()
        logits = out.pred_logits.float()
        pred_boxes = distances_to_boxes(
            decode_distances(pred_dist, self.reg_max), out.anchor_points
        )  # grid units
        gt_labels, gt_boxes, gt_mask = pad_targets(targets, logits.device)

        assigned = self.assigner(
            logits.detach().sigmoid(),
            (pred_boxes.detach() * out.strides).to(gt_boxes.dtype),
            out.anchor_points * out.strides,
            gt_labels,
            gt_boxes,
            gt_mask,
        )
        score_sum = loss_normaliser(assigned.scores.sum())
        loss_cls = F.binary_cross_entropy_with_logits(logits, assigned.scores, reduction="sum") / score_sum

        fg = assigned.fg_mask
        if fg.any():
            target_boxes = assigned.boxes / out.strides  # grid units
            weight = assigned.scores.sum(-1)[fg]
            ciou = box_ciou(pred_boxes[fg], target_boxes[fg])
            loss_box = ((1.0 - ciou) * weight).sum() / score_sum
            anchors = out.anchor_points.expand_as(pred_boxes[..., :2])[fg]
            ltrb = torch.cat((anchors - target_boxes[fg][:, :2], target_boxes[fg][:, 2:] - anchors), dim=-1)
            ltrb = ltrb.clamp(0, self.reg_max - 1 - 0.01)
            loss_dfl = (distribution_focal_loss(pred_dist[fg], ltrb) * weight).sum() / score_sum
        else:
            loss_box = pred_dist.sum() * 0.0
            loss_dfl = pred_dist.sum() * 0.0
        return {
            "box": loss_box * self.gains["box"],
            "cls": loss_cls * self.gains["cls"],
            "dfl": loss_dfl * self.gains["dfl"],
        }
