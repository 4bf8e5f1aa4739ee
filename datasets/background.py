"""Defect-free ("clean") tiles cut from annotated images, for background training and anomaly models.

NEU-DET has no defect-free image, but most of its images have steel around their boxes. A clean tile is
a square window whose every pixel lies at least ``margin_px`` from every box of its image. Tiles keep
the source's pixel pitch (the model's scale: the daemon scores 200 x 200 native tiles, as NEU-DET was
labelled); a small crop is never up-scaled. To feed one to a detector that wants a full tile, the crop
is mirrored out to the tile's side (:func:`tile_canvas`): the texture keeps its scale and no seam appears.

Guards against NEU's missed labels (a defect the annotator did not box):

- ``margin_px``: every tile keeps this distance from every box (boxes are drawn loosely; a defect's faint
  tail often runs past its box).
- ``max_box_cover``: an image whose boxes cover more than this share of it is skipped. Texture classes
  (crazing, rolled-in scale, pitted surface) are labelled as a few boxes over a surface that is defective
  almost everywhere; what lies between their boxes is rarely clean steel.
- ``min_tile_px``: no tile smaller than this (a thin strip between boxes says little about clean steel).
- an optional check with the detector's own high-score boxes lives in ``training.background_check``
  (this package stays torch-free).

Placement is greedy and deterministic: the largest size first, positions scanned row by row on a
``stride_px`` grid, tiles of one image never overlap.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.dhash import read_gray
from datasets.model import AnnotatedSet, ImageRecord

MANIFEST_NAME = "background.json"
REPORT_NAME = "report.md"
FORMAT = "steel-background/1"


@dataclass(frozen=True, slots=True)
class BackgroundRule:
    """How clean tiles are chosen; saved with every tile set so it can be audited and reproduced."""

    margin_px: int = 12
    tile_sizes_px: tuple[int, ...] = (128, 96, 64)
    min_tile_px: int = 64
    stride_px: int = 8
    max_box_cover: float = 0.5
    max_tiles_per_image: int = 4
    # Looked at by eye (contact sheets): crazing's unboxed surface is crazed almost everywhere; pitted
    # surface images are nearly all box. Their "clean" windows would teach the model to ignore defects.
    exclude_classes: tuple[str, ...] = ("crazing", "pitted_surface")
    canvas_px: int = 200  # the model's tile side in source pixels (configs/inspection.yaml tiling.tile_hw)

    def __post_init__(self) -> None:
        if self.margin_px < 0:
            raise ValueError(f"margin_px: {self.margin_px} is not >= 0")
        if self.min_tile_px < 8:
            raise ValueError(f"min_tile_px: {self.min_tile_px} is not >= 8")
        if not self.tile_sizes_px or any(s < self.min_tile_px for s in self.tile_sizes_px):
            raise ValueError(f"tile_sizes_px: {self.tile_sizes_px} must be non-empty and >= min_tile_px")
        if any(s > self.canvas_px for s in self.tile_sizes_px):
            raise ValueError(f"tile_sizes_px: {self.tile_sizes_px} must be <= canvas_px {self.canvas_px}")
        if self.stride_px < 1:
            raise ValueError(f"stride_px: {self.stride_px} is not >= 1")
        if not 0.0 < self.max_box_cover <= 1.0:
            raise ValueError(f"max_box_cover: {self.max_box_cover} is not in (0, 1]")
        if self.max_tiles_per_image < 1:
            raise ValueError(f"max_tiles_per_image: {self.max_tiles_per_image} is not >= 1")


@dataclass(frozen=True, slots=True)
class CleanTile:
    """One clean window: ``xyxy`` in source pixels (x2/y2 exclusive), its source image and class."""

    source: str
    source_class: str
    xyxy: tuple[int, int, int, int]
    file: str = ""

    @property
    def side(self) -> int:
        return self.xyxy[2] - self.xyxy[0]


@dataclass(slots=True)
class BackgroundResult:
    """Tiles and the facts of how they were chosen (what the report and ``--json`` print)."""

    rule: BackgroundRule
    tiles: list[CleanTile]
    images: int
    skipped_covered: dict[str, int] = field(default_factory=dict)  # per class: images over max_box_cover
    skipped_class: dict[str, int] = field(default_factory=dict)  # per class: images of an excluded class
    without_room: dict[str, int] = field(default_factory=dict)  # per class: no window fits
    on_contact_sheets: list[str] = field(default_factory=list)  # tile files drawn for review by eye

    def per_class(self) -> dict[str, int]:
        return dict(Counter(t.source_class for t in self.tiles))

    def sizes(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(Counter(t.side for t in self.tiles).items())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rule": {
                **asdict(self.rule),
                "tile_sizes_px": list(self.rule.tile_sizes_px),
                "exclude_classes": list(self.rule.exclude_classes),
            },
            "images": self.images,
            "tiles": len(self.tiles),
            "per_class": self.per_class(),
            "sizes_px": self.sizes(),
            "pixels": int(sum(t.side**2 for t in self.tiles)),
            "skipped_covered": self.skipped_covered,
            "skipped_class": self.skipped_class,
            "without_room": self.without_room,
            "on_contact_sheets": self.on_contact_sheets,
            "items": [asdict(t) for t in self.tiles],
        }


def source_class(image: ImageRecord) -> str:
    """The class an image was filed under: its most frequent label (NEU names files by class)."""
    labels = Counter(box.label for box in image.boxes)
    return labels.most_common(1)[0][0] if labels else "none"


def forbidden_mask(image: ImageRecord, margin_px: int) -> np.ndarray:
    """bool (H, W): pixels within ``margin_px`` of any box (the box itself included)."""
    mask = np.zeros((image.height, image.width), dtype=bool)
    for box in image.boxes:
        x1 = max(0, int(np.floor(box.x1)) - margin_px)
        y1 = max(0, int(np.floor(box.y1)) - margin_px)
        x2 = min(image.width, int(np.ceil(box.x2)) + margin_px)
        y2 = min(image.height, int(np.ceil(box.y2)) + margin_px)
        mask[y1:y2, x1:x2] = True
    return mask


def box_cover(image: ImageRecord) -> float:
    """Share of the image's pixels inside at least one box."""
    if image.width <= 0 or image.height <= 0:
        return 0.0
    return float(forbidden_mask(image, 0).mean())


def find_clean_windows(image: ImageRecord, rule: BackgroundRule) -> list[tuple[int, int, int, int]]:
    """Non-overlapping square windows (xyxy, source pixels) free of every box + margin, largest first."""
    mask = forbidden_mask(image, rule.margin_px).astype(np.int32)
    taken = np.zeros_like(mask)
    windows: list[tuple[int, int, int, int]] = []
    for side in sorted(rule.tile_sizes_px, reverse=True):
        if side > min(image.width, image.height):
            continue
        for y in _starts(image.height, side, rule.stride_px):
            for x in _starts(image.width, side, rule.stride_px):
                if len(windows) >= rule.max_tiles_per_image:
                    return windows
                if mask[y : y + side, x : x + side].any() or taken[y : y + side, x : x + side].any():
                    continue
                windows.append((x, y, x + side, y + side))
                taken[y : y + side, x : x + side] = 1
    return windows


def _starts(length: int, side: int, stride: int) -> list[int]:
    """Grid start offsets with the last one snapped to the edge (every window whole and inside)."""
    last = length - side
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def select_clean_tiles(aset: AnnotatedSet, rule: BackgroundRule) -> BackgroundResult:
    """Clean windows of every image in ``aset`` (images without a file are skipped)."""
    tiles: list[CleanTile] = []
    covered: dict[str, int] = defaultdict(int)
    excluded: dict[str, int] = defaultdict(int)
    no_room: dict[str, int] = defaultdict(int)
    images = 0
    for image in aset.images:
        if image.path is None:
            continue
        images += 1
        cls = source_class(image)
        if cls in rule.exclude_classes:
            excluded[cls] += 1
            continue
        if box_cover(image) > rule.max_box_cover:
            covered[cls] += 1
            continue
        windows = find_clean_windows(image, rule)
        if not windows:
            no_room[cls] += 1
        tiles.extend(CleanTile(source=image.name, source_class=cls, xyxy=w) for w in windows)
    return BackgroundResult(
        rule=rule,
        tiles=tiles,
        images=images,
        skipped_covered=dict(covered),
        skipped_class=dict(excluded),
        without_room=dict(no_room),
    )


def tile_canvas(crop: np.ndarray, side: int) -> np.ndarray:
    """Mirror a crop out to ``side`` x ``side`` pixels, crop centred; its pixel pitch is kept.

    Mirroring (not zeros or a resize) keeps the texture's scale and statistics and adds no edge a
    detector could take for a defect. Returns uint8 (side, side[, C]).
    """
    h, w = crop.shape[:2]
    if h > side or w > side:
        raise ValueError(f"crop {w}x{h} is larger than the {side}px canvas")
    top, left = (side - h) // 2, (side - w) // 2
    pad = [(top, side - h - top), (left, side - w - left)] + [(0, 0)] * (crop.ndim - 2)
    # numpy's "symmetric" (edge row repeated, like cv2.BORDER_REFLECT) also handles pads wider than the crop
    return np.ascontiguousarray(np.pad(crop, pad, mode="symmetric"))


def canvas_crop_xyxy(tile: CleanTile, side: int) -> tuple[int, int, int, int]:
    """Where the real crop lies inside its canvas (the rest is its mirror image)."""
    s = tile.side
    off = (side - s) // 2
    return (off, off, off + s, off + s)


def write_tiles(result: BackgroundResult, aset: AnnotatedSet, out_dir: Path) -> Path:
    """Write ``crops/`` (native crops), ``canvas/`` (model-tile canvases), ``background.json``."""
    by_name = aset.by_name()
    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
    (out_dir / "canvas").mkdir(parents=True, exist_ok=True)
    written: list[CleanTile] = []
    cache: dict[str, np.ndarray] = {}
    for tile in result.tiles:
        rec = by_name[tile.source]
        if tile.source not in cache:
            cache.clear()
            cache[tile.source] = read_gray_image(rec.found_path())
        x1, y1, x2, y2 = tile.xyxy
        crop = cache[tile.source][y1:y2, x1:x2]
        name = f"{Path(tile.source).stem}_x{x1}_y{y1}_s{x2 - x1}.png"
        _imwrite(out_dir / "crops" / name, crop)
        _imwrite(out_dir / "canvas" / name, tile_canvas(crop, result.rule.canvas_px))
        written.append(CleanTile(tile.source, tile.source_class, tile.xyxy, file=name))
    result.tiles = written
    return write_manifest(result, out_dir)


def write_manifest(result: BackgroundResult, out_dir: Path) -> Path:
    path = out_dir / MANIFEST_NAME
    path.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path


def read_gray_image(path: Path) -> np.ndarray:
    """``datasets.dhash.read_gray``, with a missing file also a ValueError naming it."""
    try:
        return read_gray(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read image: {exc.strerror or exc}") from None


def _imwrite(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"{path}: cannot encode PNG")
    buf.tofile(path)


def read_background(path: str | Path) -> tuple[dict[str, Any], list[CleanTile]]:
    """Read a tile set written by :func:`write_tiles`: (its summary, tiles). Errors name file and field."""
    path = Path(path)
    manifest = path / MANIFEST_NAME if path.is_dir() else path
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{manifest}: no background tile set here (run `steel data background`)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{manifest}: malformed JSON: {exc}") from None
    if data.get("format") != FORMAT:
        raise ValueError(f"{manifest}: format: {data.get('format')!r} is not {FORMAT!r}")
    tiles = []
    for i, item in enumerate(data.get("items", [])):
        try:
            tiles.append(
                CleanTile(item["source"], item["source_class"], tuple(item["xyxy"]), file=item["file"])
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{manifest}: items[{i}]: missing or bad field {exc}") from None
    return data, tiles


def tiles_of(tiles: Sequence[CleanTile], sources: set[str]) -> list[CleanTile]:
    """The tiles cut from images named in ``sources`` (e.g. the train or val side of a split)."""
    return [t for t in tiles if t.source in sources]
