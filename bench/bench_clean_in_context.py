"""Benchmark: strays on clean steel in context (whole validation frames) against the mirrored clean tiles.

Run from the repository root:
``.venv/bin/python bench/bench_clean_in_context.py --bundle models/neu-yolo-n [--bundle B2 ...]``

For each bundle, at its own operating point (per-class thresholds): detections on the validation frames
of the classes clean tiles are cut from (crazing and pitted_surface cover their frames and give none),
counted where the box centre lies at least ``--margin`` px from every annotated box, per 100 tiles of
clean area (``training.clean_context``); beside it the same bundle on the mirrored clean validation tiles
(``steel data background``). With ``anomaly/`` in the bundle, both again with the daemon's anomaly veto
(a box whose anomaly evidence is below ``threshold.detection_evidence`` is dropped). Never asserts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.background import read_gray_image, source_class  # noqa: E402
from datasets.detections import Detections  # noqa: E402
from datasets.readers import read_dataset  # noqa: E402
from datasets.settings import data_root  # noqa: E402
from datasets.split import apply_split, read_split  # noqa: E402
from training.anomaly.base import box_evidence  # noqa: E402
from training.anomaly.store import BUNDLE_SUBDIR, AnomalyModel, load_anomaly  # noqa: E402
from training.background import load_canvases, strays_per_100  # noqa: E402
from training.clean_context import clean_context_strays  # noqa: E402
from training.inference import Predictor  # noqa: E402

SOURCES = ("inclusion", "patches", "rolled-in_scale", "scratches")


def with_veto(anomaly: AnomalyModel, images: list[np.ndarray], dets: list[Detections]) -> list[Detections]:
    """The detections the daemon keeps once its anomaly veto has run (unchanged without a stored level)."""
    level = anomaly.detection_evidence
    if level is None:
        return dets
    maps = anomaly.scorer.maps(images)
    return [d[box_evidence(d.xyxy, m) >= level] for d, m in zip(dets, maps, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", action="append", required=True, help="model bundle folder (repeat)")
    parser.add_argument("--tiles", default="runs/background/neu-dev", help="steel data background --out")
    parser.add_argument("--split", default="configs/splits/neu-det-dev.json")
    parser.add_argument("--margin", type=int, default=12, help="clean = at least this far from every box")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = read_split(args.split)
    _, val_set = apply_split(read_dataset(data_root() / "annotations"), split)
    records = [r for r in val_set.images if source_class(r) in SOURCES]
    frames = [read_gray_image(r.found_path()) for r in records]
    tiles = [c.image for c in load_canvases(args.tiles, set(split.val))]
    print(f"{len(records)} validation frames of {', '.join(SOURCES)}; {len(tiles)} mirrored clean tiles; "
          f"margin {args.margin} px\n")  # fmt: skip
    print("| bundle | veto | clean tile-areas in context | strays / 100 in context | "
          + " | ".join(SOURCES) + " | strays / 100 mirrored tiles |")  # fmt: skip
    print("|---|---|--:|--:|" + "--:|" * len(SOURCES) + "--:|")
    for bundle in args.bundle:
        predictor = Predictor(bundle, device="cpu", score_threshold=0.01)
        thresholds = np.asarray(predictor.bundle.class_thresholds(None), dtype=np.float32)
        frame_dets, tile_dets = predictor(frames), predictor(tiles)
        variants = [("none", frame_dets, tile_dets)]
        if (Path(bundle) / BUNDLE_SUBDIR).is_dir():
            anomaly = load_anomaly(Path(bundle) / BUNDLE_SUBDIR, threads=args.threads)
            vetoed = (with_veto(anomaly, frames, frame_dets), with_veto(anomaly, tiles, tile_dets))
            variants.append(("anomaly", *vetoed))
        for veto, fd, td in variants:
            found = clean_context_strays(records, fd, thresholds, margin_px=args.margin)
            per_source = " | ".join(f"{found.per_100(s):.1f}" for s in SOURCES)
            print(
                f"| {bundle} ({predictor.version}) | {veto} | {sum(found.tile_areas.values()):.1f} | "
                f"{found.per_100():.1f} | {per_source} | {strays_per_100(td, thresholds):.1f} |"
            )


if __name__ == "__main__":
    main()
