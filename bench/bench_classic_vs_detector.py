"""Benchmark: the classical texture baseline against the YOLO detector's image-level answer, on the
validation side of the development split, for both classical tasks.

Run from the repository root::

    .venv/bin/python bench/bench_classic_vs_detector.py --json var/classic-vs-detector.json

- six-class image classification: the detector's answer is the class of its highest-scoring detection
  (any score; an image without one counts as wrong); the classical one is ``models/neu-classic``.
- defect vs clean tiles (the tile rule of ``training/classical/tiles.py``, as stored in
  ``models/neu-classic-tiles``): the detector runs on the whole image and calls a tile *defect* when a
  detection scoring at least the bundle's threshold (``--conf``, default the bundle's) overlaps it.

Prints a Markdown table (accuracy and per-class recall) and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from datasets.settings import REPO_ROOT, data_root  # noqa: E402
from datasets.split import NO_BOXES, dominant_label  # noqa: E402
from datasets.texture.bundle import load_classic_bundle  # noqa: E402
from training.classical.metrics import classification_report  # noqa: E402
from training.classical.run import DataSource, evaluate, read_sides, tile_rule_of  # noqa: E402
from training.classical.tiles import TILE_CLASSES, cut_tiles  # noqa: E402
from training.inference import Predictor, read_image  # noqa: E402


def detector_answers(model: Path, records: list, conf: float | None) -> tuple[list, float]:
    """Per image: detections as ``(xyxy (N, 4), scores (N,), class ids (N,))``, and the threshold used."""
    predictor = Predictor(str(model), device="cpu", score_threshold=0.0)
    out = []
    for start in range(0, len(records), 32):
        chunk = records[start : start + 32]
        for det in predictor([read_image(str(r.path)) for r in chunk]):
            out.append((np.asarray(det.xyxy), np.asarray(det.scores), np.asarray(det.class_ids)))
    return out, predictor.bundle.score_threshold if conf is None else conf


def image_task(records: list, answers: list, class_names: tuple[str, ...]) -> dict:
    keep = [k for k, r in enumerate(records) if dominant_label(r) != NO_BOXES]
    targets = np.array([class_names.index(dominant_label(records[k])) for k in keep])
    predicted = np.array(
        [int(answers[k][2][np.argmax(answers[k][1])]) if len(answers[k][1]) else -1 for k in keep]
    )
    return classification_report(targets, predicted, class_names)


def tile_task(records: list, answers: list, rule, conf: float) -> dict:
    targets, predicted = [], []
    for record, (xyxy, scores, _) in zip(records, answers, strict=True):
        boxes = xyxy[scores >= conf]
        for tile in cut_tiles(record.boxes, record.width, record.height, rule):
            x2, y2 = tile.x + tile.size, tile.y + tile.size
            hit = np.any(
                (boxes[:, 0] < x2) & (boxes[:, 2] > tile.x) & (boxes[:, 1] < y2) & (boxes[:, 3] > tile.y)
            )
            targets.append(TILE_CLASSES.index(tile.label))
            predicted.append(int(bool(hit)))
    return classification_report(np.array(targets), np.array(predicted), TILE_CLASSES)


def _row(name: str, report: dict) -> str:
    recalls = " / ".join(f"{v['recall']:.3f}" for v in report["per_class"].values())
    return f"| {name} | {report['accuracy']:.4f} | {recalls} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, default=REPO_ROOT / "models" / "neu-yolo-n")
    parser.add_argument("--classic", type=Path, default=REPO_ROOT / "models" / "neu-classic")
    parser.add_argument("--classic-tiles", type=Path, default=REPO_ROOT / "models" / "neu-classic-tiles")
    parser.add_argument("--split", type=Path, default=REPO_ROOT / "configs" / "splits" / "neu-det-dev.json")
    parser.add_argument("--conf", type=float, default=None, help="detector score threshold for tiles")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    source = DataSource(data_root() / "annotations", data_root() / "images", args.split)
    classic = evaluate(source, model_dir=args.classic)
    classic_tiles = evaluate(source, model_dir=args.classic_tiles)
    names = load_classic_bundle(args.classic).model.class_names
    _, val = read_sides(source, names)
    answers, conf = detector_answers(args.detector, val.images, args.conf)
    detector = image_task(val.images, answers, names)
    detector_tiles = tile_task(
        val.images, answers, tile_rule_of(load_classic_bundle(args.classic_tiles)), conf
    )
    print(f"validation side of {args.split.name}: {len(val.images)} images\n")
    print(f"| six-class image classification | accuracy | recall {' / '.join(names)} |")
    print("| --- | ---: | --- |")
    print(_row(f"classical ({classic['model']})", classic))
    print(_row("YOLO detector, top detection's class", detector))
    print(
        f"\n| defect vs clean tiles ({classic_tiles['samples']} tiles) | accuracy | recall clean / defect |"
    )
    print("| --- | ---: | --- |")
    print(_row(f"classical ({classic_tiles['model']})", classic_tiles))
    print(_row(f"YOLO detector, a detection >= {conf} overlaps the tile", detector_tiles))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"classic": classic, "classic_tiles": classic_tiles, "detector": detector}
        figures["detector_tiles"] = {**detector_tiles, "conf": conf}
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
