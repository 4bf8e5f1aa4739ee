"""Benchmark: stray detections on clean validation tiles, per model bundle.

Run from the repository root:
``.venv/bin/python bench/bench_background.py --bundle models/neu-yolo-n [--bundle B2 ...]
--tiles runs/background/neu-dev``

Clean tiles come from ``steel data background`` (mirrored canvases, the model's tile side); only tiles cut
from images on the validation side of the split are scored. A stray is any detection on a clean tile at
``score >= threshold``; the table gives strays per 100 tiles at the bundle's operating point and at 0.5,
the share of tiles with any stray, and the bundle's own validation mAP@0.5 (its manifest). Never asserts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.detections import Detections  # noqa: E402
from datasets.split import read_split  # noqa: E402
from training.background import (  # noqa: E402
    CleanCanvas,
    detections_on,
    load_canvases,
    strays_on_real_crops,
    strays_per_100,
)
from training.inference import Predictor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", required=True, help="model bundle folder (repeat)")
    parser.add_argument("--tiles", default="runs/background/neu-dev", help="steel data background --out")
    parser.add_argument("--split", default="configs/splits/neu-det-dev.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", dest="json_out", help="also write the rows here")
    parser.add_argument(
        "--sheets", help="write contact sheets of the tiles with a stray @op: PREFIX-<bundle#>-<n>.jpg"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = read_split(args.split)
    canvases = load_canvases(args.tiles, set(split.val))
    print(f"{len(canvases)} clean validation tiles from {args.tiles} (split {args.split})\n")
    print(
        "| bundle | op. point | strays/100 @op | strays/100 @0.5 | tiles with a stray @op | "
        "centred on the real crop /100 tiles @op | the same per 100 canvas areas of real crop | val mAP@0.5 |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    rows = []
    for path in args.bundle:
        predictor = Predictor(path, device="cpu", score_threshold=0.05)
        op = predictor.bundle.score_threshold
        dets = detections_on(predictor, canvases)
        with_stray = sum(bool((d.scores >= op).any()) for d in dets)
        by_class = Counter(
            predictor.class_names[int(c)]
            for d in dets
            for c, s in zip(d.class_ids, d.scores, strict=True)
            if s >= op
        )
        row = {
            "bundle": path,
            "version": predictor.version,
            "tiles": len(canvases),
            "operating_point": op,
            "strays_per_100_at_op": strays_per_100(dets, op),
            "strays_per_100_at_0.5": strays_per_100(dets, 0.5),
            "tiles_with_stray_share": with_stray / max(1, len(canvases)),
            "strays_by_class": dict(by_class),
            "on_real_crops_at_op": strays_on_real_crops(canvases, dets, op),
            "val_map50": predictor.bundle.manifest.get("metrics", {}).get("map50"),
        }
        rows.append(row)
        if args.sheets:
            contact_sheets(canvases, dets, op, predictor.class_names, f"{args.sheets}-{len(rows)}")
        m = row["val_map50"]
        on_crops, crop_area = row["on_real_crops_at_op"]
        print(
            f"| {path} ({row['version']}) | {op:.2f} | {row['strays_per_100_at_op']:.1f} | "
            f"{row['strays_per_100_at_0.5']:.1f} | {row['tiles_with_stray_share']:.1%} | "
            f"{100 * on_crops / len(canvases):.1f} | {100 * on_crops / crop_area:.1f} | "
            f"{'' if m is None else f'{m:.4f}'} |"
        )
    for row in rows:
        print(f"\n{row['bundle']}: strays at op by class {row['strays_by_class']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


def contact_sheets(
    canvases: Sequence[CleanCanvas],
    dets: Sequence[Detections],
    threshold: float,
    names: list[str],
    prefix: str,
    cols: int = 6,
) -> None:
    """Tiles with a stray, for looking at by eye: the real crop in cyan, each stray in red with its class
    and score, the tile's file name in green; 4 rows of ``cols`` tiles per JPEG."""
    cells = []
    for canvas, d in zip(canvases, dets, strict=True):
        keep = d.scores >= threshold
        if not keep.any():
            continue
        image = cv2.cvtColor(canvas.image, cv2.COLOR_GRAY2BGR)
        x1, y1, x2, y2 = canvas.crop_xyxy
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (255, 255, 0), 1)
        for box, score, cls in zip(d.xyxy[keep], d.scores[keep], d.class_ids[keep], strict=True):
            bx1, by1, bx2, by2 = (int(v) for v in box)
            cv2.rectangle(image, (bx1, by1), (bx2, by2), (0, 0, 255), 2)
            label = f"{names[int(cls)][:5]} {score:.2f}"
            cv2.putText(
                image, label, (bx1 + 2, max(12, by1 + 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255)
            )
        cv2.putText(image, canvas.tile.file[:30], (2, 196), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 255, 0))
        cells.append(image)
    if not cells:
        return
    cells += [np.zeros_like(cells[0])] * (-len(cells) % cols)
    rows = [np.hstack(cells[i : i + cols]) for i in range(0, len(cells), cols)]
    for n, start in enumerate(range(0, len(rows), 4)):
        cv2.imwrite(f"{prefix}-{n}.jpg", np.vstack(rows[start : start + 4]), [cv2.IMWRITE_JPEG_QUALITY, 85])


if __name__ == "__main__":
    main()
