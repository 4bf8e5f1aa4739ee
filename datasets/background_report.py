"""The audit-style report of a clean-tile set: counts per source class, sizes, the rule, and contact
sheets (each tile drawn in its source image with the boxes and margin) for a person to look at."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np

from datasets.background import REPORT_NAME, BackgroundResult, CleanTile, read_gray_image
from datasets.model import ImageRecord

SHEET_COLUMNS = 6
BOX_BGR = (0, 0, 255)
MARGIN_BGR = (0, 165, 255)
TILE_BGR = (0, 200, 0)


def sample_for_review(result: BackgroundResult, per_class: int, seed: int = 0) -> dict[str, list[CleanTile]]:
    """A seeded random sample of up to ``per_class`` tiles of each source class."""
    by_class: dict[str, list[CleanTile]] = {}
    for tile in result.tiles:
        by_class.setdefault(tile.source_class, []).append(tile)
    rng = random.Random(seed)
    return {k: rng.sample(v, min(per_class, len(v))) for k, v in sorted(by_class.items())}


def contact_sheet(tiles: list[CleanTile], records: dict[str, ImageRecord], margin_px: int) -> np.ndarray:
    """BGR uint8 grid: each cell the tile's source image, boxes red, margin orange, the tile green."""
    cells = [_cell(t, records[t.source], margin_px) for t in tiles]
    if not cells:
        return np.zeros((8, 8, 3), np.uint8)
    h, w = cells[0].shape[:2]
    rows = (len(cells) + SHEET_COLUMNS - 1) // SHEET_COLUMNS
    sheet = np.full((rows * (h + 4), SHEET_COLUMNS * (w + 4), 3), 255, np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, SHEET_COLUMNS)
        sheet[r * (h + 4) : r * (h + 4) + h, c * (w + 4) : c * (w + 4) + w] = cell
    return sheet


def _cell(tile: CleanTile, record: ImageRecord, margin_px: int) -> np.ndarray:
    gray = read_gray_image(record.found_path())
    cell = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    _draw_boxes(cell, [b.xyxy for b in record.boxes], margin_px)
    x1, y1, x2, y2 = tile.xyxy
    cv2.rectangle(cell, (x1, y1), (x2 - 1, y2 - 1), TILE_BGR, 1)
    return cell


def _draw_boxes(cell: np.ndarray, boxes: list[tuple[float, float, float, float]], margin_px: int) -> None:
    for bx1, by1, bx2, by2 in boxes:
        p1, p2 = (int(bx1), int(by1)), (int(bx2) - 1, int(by2) - 1)
        cv2.rectangle(cell, p1, p2, BOX_BGR, 1)
        q1 = (int(bx1) - margin_px, int(by1) - margin_px)
        q2 = (int(bx2) - 1 + margin_px, int(by2) - 1 + margin_px)
        cv2.rectangle(cell, q1, q2, MARGIN_BGR, 1)


def write_background_report(
    result: BackgroundResult,
    out_dir: Path,
    *,
    records: dict[str, ImageRecord],
    per_class_sheet: int = 24,
) -> Path:
    """Write ``report.md`` and ``sheet_<class>.png`` contact sheets; returns the report path."""
    lines = [f"# Clean tiles: {len(result.tiles)} from {result.images} images", ""]
    rule = result.rule
    lines += [
        f"Rule: margin {rule.margin_px} px from every box; tile sides {list(rule.tile_sizes_px)} px "
        f"(source pixels, never up-scaled; canvas {rule.canvas_px} px by mirroring); images whose boxes "
        f"cover more than {rule.max_box_cover:.0%} skipped; at most {rule.max_tiles_per_image} tiles "
        f"per image, never overlapping; no tiles from images of {list(rule.exclude_classes)}.",
        "",
        "| source class | tiles | pixels | excluded images | images too covered | images without room |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    classes = sorted(
        set(result.per_class())
        | set(result.skipped_class)
        | set(result.skipped_covered)
        | set(result.without_room)
    )
    for name in classes:
        tiles = [t for t in result.tiles if t.source_class == name]
        lines.append(
            f"| {name} | {len(tiles)} | {sum(t.side**2 for t in tiles)} | "
            f"{result.skipped_class.get(name, 0)} | {result.skipped_covered.get(name, 0)} | "
            f"{result.without_room.get(name, 0)} |"
        )
    lines += ["", "| tile side (px) | tiles |", "|--:|--:|"]
    lines += [f"| {side} | {n} |" for side, n in result.sizes().items()]
    reviewed = 0
    if per_class_sheet:
        lines += ["", "## Contact sheets (green: tile; red: box; orange: box + margin)", ""]
        for name, sample in sample_for_review(result, per_class_sheet).items():
            sheet = contact_sheet(sample, records, rule.margin_px)
            path = out_dir / f"sheet_{name}.png"
            cv2.imwrite(str(path), sheet)
            reviewed += len(sample)
            result.on_contact_sheets.extend(t.file for t in sample)
            lines.append(f"- {name}: {len(sample)} tiles, [{path.name}]({path.name})")
        share = reviewed / max(1, len(result.tiles))
        lines += ["", f"{reviewed} tiles ({share:.1%}) are on the sheets for review by eye."]
    path = out_dir / REPORT_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
