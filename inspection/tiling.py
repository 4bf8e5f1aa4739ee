"""Cutting frames into model-sized tiles and merging the tiles' detections back into one frame.

Offsets come from a pure function (:func:`tile_offsets`): tiles step by ``tile - overlap`` and the
last tile is snapped to the frame's edge, so every tile is whole and inside the frame; a frame
smaller than a tile gives one tile, padded at the bottom/right.

Merging (:func:`merge_tile_detections`) works in frame pixels and in a fixed order, so the result
depends on the detections, never on the order the tiles were scored in:

1. Each tile's boxes are shifted by the tile's offset (inputs are never modified).
2. **Border fragments are joined.** A defect cut by a tile border appears as partial boxes that end
   at the border, and their IoU is often far below any NMS threshold (a long scratch over three
   tiles gives three boxes that barely overlap). Box ``a`` is a *fragment* at an interior edge of its
   tile when its side lies within ``edge_px`` of that edge (an edge that is not the frame's edge).
   ``a`` is joined with a box ``b`` of the same class from another tile when ``b`` continues ``a``
   across that edge: for ``a`` cut at its tile's right edge, ``b`` reaches further right than ``a``,
   starts before ``a``'s right side (+ ``edge_px``, so boxes that only touch at a border with no tile
   overlap still join), and their vertical extents overlap; likewise for the other three edges.
   Joined groups (transitively: a fragment chain across several tiles) become their union box,
   scored by the group's best score. Two same-class boxes that do not touch, and boxes of different
   classes, are never joined.
3. **Duplicates are removed** class-wise: ``"nms"`` keeps the best-scored box of each group with
   IoU >= ``iou_threshold``; ``"wbf"`` replaces the group by the score-weighted mean box (scored by
   its best score). The same defect seen whole in two overlapping tiles ends here.

Boxes are visited sorted by score (descending) then ``x1, y1, x2, y2, class``, and the output comes
out in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from datasets.detections import Detections
from inspection.constants import DEFAULT_BORDER_EDGE_PX, DEFAULT_MERGE_IOU, DEFAULT_TILE_PAD_MODE


def tile_offsets(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles along one axis.

    Args:
        length: frame size along the axis (pixels, >= 1).
        tile: tile size (>= 1).
        overlap: pixels shared by neighbouring tiles, ``0 <= overlap < tile``.

    Returns:
        ``[0, s, 2s, ..., length - tile]`` with ``s = tile - overlap``, the last one snapped to the edge
        (so the last two tiles may overlap by more than ``overlap``); ``[0]`` when ``length <= tile``.
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be >= 1, got length={length}, tile={tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
    if length <= tile:
        return [0]
    last = length - tile
    offsets = list(range(0, last, tile - overlap))
    offsets.append(last)
    return offsets


def tile_grid(
    frame_hw: tuple[int, int], tile_hw: tuple[int, int], overlap_hw: tuple[int, int]
) -> list[tuple[int, int]]:
    """Top-left corners ``(x, y)`` of the tiles covering a frame, row by row (y, then x)."""
    ys = tile_offsets(frame_hw[0], tile_hw[0], overlap_hw[0])
    xs = tile_offsets(frame_hw[1], tile_hw[1], overlap_hw[1])
    return [(x, y) for y in ys for x in xs]


def cut_tiles(
    image: np.ndarray,
    grid: Sequence[tuple[int, int]],
    tile_hw: tuple[int, int],
    *,
    pad_mode: Literal["reflect", "edge", "constant"] = DEFAULT_TILE_PAD_MODE,
) -> np.ndarray:
    """The tiles of ``image`` at ``grid`` as one new array.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``.
        grid: ``(x, y)`` corners, e.g. from :func:`tile_grid`.
        tile_hw: ``(th, tw)``.
        pad_mode: how a frame smaller than a tile is extended at the bottom/right (numpy ``pad``
            modes; ``"constant"`` pads with 0). Detections in the padding should be clipped away
            (``merge_tile_detections(..., frame_hw=...)``).

    Returns:
        ``(N, th, tw)`` or ``(N, th, tw, C)``, same dtype; ``N = len(grid)``.
    """
    th, tw = tile_hw
    h, w = image.shape[:2]
    pad_h, pad_w = max(0, th - h), max(0, tw - w)
    if pad_h or pad_w:
        pads = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
        image = np.pad(image, pads, mode=pad_mode)
    out = np.empty((len(grid), th, tw, *image.shape[2:]), dtype=image.dtype)
    for i, (x, y) in enumerate(grid):
        if x < 0 or y < 0 or y + th > image.shape[0] or x + tw > image.shape[1]:
            raise ValueError(f"tile at (x={x}, y={y}) of size {tile_hw} leaves the {h}x{w} frame")
        out[i] = image[y : y + th, x : x + tw]
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``a`` ``(N, 4)`` and ``b`` ``(M, 4)`` xyxy boxes -> ``(N, M)``."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _canonical_order(dets: Detections) -> np.ndarray:
    """Indices sorting by score (descending), then x1, y1, x2, y2, class id (ascending)."""
    x = dets.xyxy
    return np.lexsort((dets.class_ids, x[:, 3], x[:, 2], x[:, 1], x[:, 0], -dets.scores))


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _fragment_pairs(
    xyxy: np.ndarray, classes: np.ndarray, tiles: np.ndarray, edges: np.ndarray, edge_px: float
) -> np.ndarray:
    """``(N, N)`` bool: box ``i`` is a fragment cut at an interior edge of its tile that box ``j`` continues.

    ``edges`` ``(N, 4)``: per box, its tile's ``x1, y1, x2, y2`` with ``nan`` for frame edges.
    """
    x1, y1, x2, y2 = (xyxy[:, k] for k in range(4))
    ex1, ey1, ex2, ey2 = (edges[:, k] for k in range(4))
    other = (classes[:, None] == classes[None, :]) & (tiles[:, None] != tiles[None, :])
    y_overlap = np.minimum(y2[:, None], y2[None, :]) > np.maximum(y1[:, None], y1[None, :])
    x_overlap = np.minimum(x2[:, None], x2[None, :]) > np.maximum(x1[:, None], x1[None, :])
    with np.errstate(invalid="ignore"):  # nan edges compare False: no fragment at a frame edge
        cut_right = (
            (np.abs(x2 - ex2) <= edge_px)[:, None]
            & (x2[None, :] > x2[:, None])
            & (x1[None, :] <= x2[:, None] + edge_px)
            & y_overlap
        )
        cut_left = (
            (np.abs(x1 - ex1) <= edge_px)[:, None]
            & (x1[None, :] < x1[:, None])
            & (x2[None, :] >= x1[:, None] - edge_px)
            & y_overlap
        )
        cut_bottom = (
            (np.abs(y2 - ey2) <= edge_px)[:, None]
            & (y2[None, :] > y2[:, None])
            & (y1[None, :] <= y2[:, None] + edge_px)
            & x_overlap
        )
        cut_top = (
            (np.abs(y1 - ey1) <= edge_px)[:, None]
            & (y1[None, :] < y1[:, None])
            & (y2[None, :] >= y1[:, None] - edge_px)
            & x_overlap
        )
    return other & (cut_right | cut_left | cut_bottom | cut_top)


def _join(
    dets: Detections, tile_of: np.ndarray, tile_edges: np.ndarray, *, edge_px: float
) -> tuple[Detections, np.ndarray]:
    """:func:`join_border_fragments`, also returning each box's tile (-1 for a box joined across tiles)."""
    n = len(dets)
    if n < 2:
        return dets, np.asarray(tile_of, dtype=np.int64).reshape(-1)
    pairs = _fragment_pairs(
        dets.xyxy.astype(np.float64), dets.class_ids, tile_of, tile_edges.astype(np.float64), edge_px
    )
    parent = list(range(n))
    for i, j in zip(*np.nonzero(pairs | pairs.T), strict=True):
        ri, rj = _find(parent, int(i)), _find(parent, int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)  # the root is the group's first box in the order
    roots = np.array([_find(parent, i) for i in range(n)])
    keep = np.flatnonzero(roots == np.arange(n))
    xyxy = np.stack(
        [
            np.concatenate([dets.xyxy[roots == r, :2].min(axis=0), dets.xyxy[roots == r, 2:].max(axis=0)])
            for r in keep
        ]
    )
    scores = np.array([dets.scores[roots == r].max() for r in keep], dtype=np.float32)
    # A joined box spans several tiles (-1); a lone box keeps its tile.
    tiles = np.array([tile_of[r] if (roots == r).sum() == 1 else -1 for r in keep], dtype=np.int64)
    return Detections(xyxy, scores, dets.class_ids[keep]), tiles


def join_border_fragments(
    dets: Detections, tile_of: np.ndarray, tile_edges: np.ndarray, *, edge_px: float = DEFAULT_BORDER_EDGE_PX
) -> Detections:
    """Union the same-class boxes that continue each other across interior tile edges (step 2).

    Args:
        dets: boxes in frame pixels, in canonical order.
        tile_of: ``(N,)`` the tile each box came from.
        tile_edges: ``(N, 4)`` that tile's ``x1, y1, x2, y2`` in frame pixels, ``nan`` at frame edges.
        edge_px: how close to an edge a box side must be to count as cut by it.

    Returns:
        One box per joined group, at the group's first (best) member's position in the order.
    """
    return _join(dets, tile_of, tile_edges, edge_px=edge_px)[0]


def remove_duplicates(
    dets: Detections,
    *,
    method: Literal["nms", "wbf"] = "nms",
    iou_threshold: float = DEFAULT_MERGE_IOU,
    tile_of: np.ndarray | None = None,
) -> Detections:
    """Class-wise NMS or weighted box fusion over ``dets`` visited in canonical order (step 3).

    With ``tile_of`` (each box's tile, -1 for boxes joined across tiles), two boxes of the same tile are
    never duplicates of each other: the model's own NMS already decided between them, with its threshold.
    """
    if method not in ("nms", "wbf"):
        raise ValueError(f"method must be 'nms' or 'wbf', got {method!r}")
    if len(dets) < 2:
        return dets
    order = _canonical_order(dets)
    dets = dets[order]
    iou = box_iou(dets.xyxy.astype(np.float64), dets.xyxy.astype(np.float64))
    same = dets.class_ids[:, None] == dets.class_ids[None, :]
    if tile_of is not None:
        tiles = np.asarray(tile_of, dtype=np.int64)[order]
        same &= ~((tiles[:, None] == tiles[None, :]) & (tiles[:, None] >= 0))
        np.fill_diagonal(same, True)
    taken = np.zeros(len(dets), dtype=bool)
    xyxy, scores, classes = [], [], []
    for i in range(len(dets)):
        if taken[i]:
            continue
        group = np.flatnonzero(~taken & same[i] & (iou[i] >= iou_threshold))
        group = np.union1d(group, [i])
        taken[group] = True
        if method == "nms":
            xyxy.append(dets.xyxy[i])
        else:
            w = dets.scores[group].astype(np.float64)
            w = w / w.sum() if w.sum() > 0 else np.full(len(group), 1.0 / len(group))
            xyxy.append((dets.xyxy[group].astype(np.float64) * w[:, None]).sum(axis=0))
        scores.append(dets.scores[i])
        classes.append(dets.class_ids[i])
    return Detections(np.array(xyxy, np.float32), np.array(scores, np.float32), np.array(classes, np.int64))


def merge_tile_detections(
    per_tile: Sequence[Detections],
    grid: Sequence[tuple[int, int]],
    tile_hw: tuple[int, int],
    *,
    method: Literal["nms", "wbf"] = "nms",
    iou_threshold: float = DEFAULT_MERGE_IOU,
    edge_px: float = DEFAULT_BORDER_EDGE_PX,
    frame_hw: tuple[int, int] | None = None,
) -> Detections:
    """One frame's detections from its tiles' detections (see the module docstring).

    Args:
        per_tile: detections of each tile in tile pixels, aligned with ``grid``.
        grid: each tile's ``(x, y)`` corner in the frame.
        tile_hw: ``(th, tw)``.
        method: ``"nms"`` or ``"wbf"`` for duplicates.
        iou_threshold: IoU at which two same-class boxes are duplicates.
        edge_px: a box side this close to an interior tile edge is cut by it.
        frame_hw: when given, boxes are clipped to the frame first (drops padding) and boxes left
            with no area are dropped.

    Returns:
        Merged detections in frame pixels, sorted by score (descending) then position.
    """
    if len(per_tile) != len(grid):
        raise ValueError(f"{len(per_tile)} tile results for {len(grid)} tiles")
    shifted = _in_frame_pixels(per_tile, grid, tile_hw)
    if shifted is None:
        return Detections.empty()
    dets, tile_of, tile_edges = shifted
    if frame_hw is not None:
        h, w = frame_hw
        clipped = np.clip(dets.xyxy, 0, np.array([w, h, w, h], dtype=np.float32))
        dets = Detections(clipped, dets.scores, dets.class_ids)
        alive = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        dets, tile_of, tile_edges = dets[alive], tile_of[alive], tile_edges[alive]
    order = _canonical_order(dets)
    dets, tile_of, tile_edges = dets[order], tile_of[order], tile_edges[order]
    joined, joined_tiles = _join(dets, tile_of, tile_edges, edge_px=edge_px)
    merged = remove_duplicates(joined, method=method, iou_threshold=iou_threshold, tile_of=joined_tiles)
    return merged[_canonical_order(merged)]


def _in_frame_pixels(
    per_tile: Sequence[Detections], grid: Sequence[tuple[int, int]], tile_hw: tuple[int, int]
) -> tuple[Detections, np.ndarray, np.ndarray] | None:
    """Step 1: every tile's boxes shifted into frame pixels, with the tile each came from ``(N,)`` and
    that tile's interior edges ``(N, 4)`` as ``x1, y1, x2, y2`` (NaN where the edge is the frame's);
    ``None`` when no tile has a box."""
    if not grid:
        return None
    th, tw = tile_hw
    corners = np.asarray(grid, dtype=np.float64).reshape(-1, 2)
    min_x, min_y = corners.min(axis=0)
    max_x, max_y = corners.max(axis=0)
    parts, tile_ids, edges = [], [], []
    for t, (dets, (x, y)) in enumerate(zip(per_tile, grid, strict=True)):
        if len(dets) == 0:
            continue
        parts.append(dets.shifted(x, y))
        tile_ids.append(np.full(len(dets), t))
        edge = [
            x if x > min_x else np.nan,
            y if y > min_y else np.nan,
            x + tw if x < max_x else np.nan,
            y + th if y < max_y else np.nan,
        ]
        edges.append(np.tile(np.asarray(edge, dtype=np.float64), (len(dets), 1)))
    if not parts:
        return None
    return Detections.merge(parts), np.concatenate(tile_ids), np.concatenate(edges)
