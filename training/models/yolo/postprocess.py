"""Turn raw head output into per-image detections: decode boxes, threshold, class-wise NMS."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from training.models.yolo.head import HeadOutput, decode_distances, distances_to_boxes


def decode_predictions(out: HeadOutput, reg_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (B, A, 4) xyxy in input pixels and class probabilities (B, A, C)."""
    boxes = (
        distances_to_boxes(decode_distances(out.pred_dist.float(), reg_max), out.anchor_points) * out.strides
    )
    return boxes, out.pred_logits.float().sigmoid()


def postprocess(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    *,
    image_hw: tuple[int, int],
    conf_threshold: float = 0.001,
    iou_threshold: float = 0.6,
    max_candidates: int = 3000,
    max_detections: int = 300,
) -> list[dict[str, torch.Tensor]]:
    """Per image: every (anchor, class) pair above ``conf_threshold`` is a candidate (multi-label,
    which helps mAP when classes look alike), top ``max_candidates`` by score, class-wise NMS.

    Returns dicts with ``boxes`` (K,4) clipped to the image, ``scores`` (K,), ``labels`` (K,) int64.
    """
    height, width = image_hw
    results = []
    num_classes = scores.shape[-1]
    for img_boxes, img_scores in zip(boxes, scores, strict=True):
        flat = img_scores.flatten()
        keep = flat > conf_threshold
        idx = keep.nonzero().squeeze(1)
        cand_scores = flat[idx]
        if cand_scores.numel() > max_candidates:
            top = cand_scores.topk(max_candidates).indices
            idx, cand_scores = idx[top], cand_scores[top]
        anchor_idx = idx // num_classes
        labels = idx % num_classes
        cand_boxes = img_boxes[anchor_idx]
        cand_boxes = torch.stack(
            (
                cand_boxes[:, 0].clamp(0, width),
                cand_boxes[:, 1].clamp(0, height),
                cand_boxes[:, 2].clamp(0, width),
                cand_boxes[:, 3].clamp(0, height),
            ),
            dim=1,
        )
        kept = batched_nms(cand_boxes, cand_scores, labels, iou_threshold)[:max_detections]
        results.append({"boxes": cand_boxes[kept], "scores": cand_scores[kept], "labels": labels[kept]})
    return results
