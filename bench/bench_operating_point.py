"""Benchmark: operating-point methods judged on images they were not chosen on (issue 12's line figures).

Run from the repository root:
``python bench/bench_operating_point.py models/neu-yolo-n models/neu-yolo-n-ens3 [--repeats 5]``

Each bundle scores the validation side of the split once. Then, ``--repeats`` times, the images are cut
into two random halves; each method chooses its thresholds on one half and is scored on the other (and
the other way round), so every figure is out of sample. Calibrating on all 288 images (what
``steel calibrate-thresholds`` does) has twice the data, so these figures are, if anything, pessimistic.
With ``--clean DIR`` (a ``steel data background`` folder) the clean tiles cut from each half's images join
that half as zero-box images (``steel calibrate-thresholds --clean``). Prints, per bundle and method:
reject recall (mean), the lowest class's reject recall (mean and worst), strays per 100 images and per
100 clean tiles (mean ± std over folds). Never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.readers import read_dataset  # noqa: E402
from datasets.split import apply_split, read_split  # noqa: E402
from training.background import load_canvases  # noqa: E402
from training.eval_inputs import GroundTruth, Prediction  # noqa: E402
from training.evaluate_cli import Scored, score_dataset  # noqa: E402
from training.line_figures import class_thresholds, line_figures  # noqa: E402
from training.operating_point import CalibrationConfig, calibrate  # noqa: E402

METHODS = {
    "f1 (best box F1 per class)": CalibrationConfig(method="f1"),
    "recall 0.95 (per class)": CalibrationConfig(method="recall"),
    "line 0.98 / 0.95": CalibrationConfig(
        method="line", target_reject_recall=0.98, target_class_reject_recall=0.95
    ),
    "line 0.99 / 0.97 (default)": CalibrationConfig(method="line"),
}


@dataclass(frozen=True)
class Scene:
    """The val images scored (with their file names) and, optionally, clean tiles cut from them."""

    scored: Scored
    names: list[str]
    clean_sources: list[str]
    clean: list[Prediction]

    def part(self, images: np.ndarray) -> tuple[list[GroundTruth], list[Prediction], int]:
        """The images at ``images`` plus the clean tiles cut from them (as zero-box images, last)."""
        chosen = {self.names[i] for i in images}
        tiles = [p for src, p in zip(self.clean_sources, self.clean, strict=True) if src in chosen]
        empty = GroundTruth(np.zeros((0, 4)), np.zeros(0, np.int64))
        gts = [self.scored.gts[i] for i in images] + [empty] * len(tiles)
        return gts, [self.scored.preds[i] for i in images] + tiles, len(tiles)


def out_of_sample(scene: Scene, cfg: CalibrationConfig, repeats: int) -> np.ndarray:
    """``(2 * repeats, 4)``: reject recall, lowest class's reject recall, strays per 100 images and per
    100 clean tiles, each on the half the thresholds were not chosen on."""
    names = scene.scored.predictor.class_names
    rng = np.random.default_rng(0)  # the same halves for every method
    rows = []
    for _ in range(repeats):
        order = rng.permutation(len(scene.scored.gts))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        for fit, test in (halves, halves[::-1]):
            point = calibrate(*scene.part(fit)[:2], names, cfg)
            thresholds = class_thresholds(names, point.per_class, cfg.floor)
            gts, preds, tiles = scene.part(test)
            images = len(gts) - tiles
            figures = line_figures(gts[:images], preds[:images], names, thresholds)
            on_clean = line_figures(gts[images:], preds[images:], names, thresholds) if tiles else None
            lowest = min(r for r in figures.reject_recall_per_class.values() if r is not None)
            clean_rate = on_clean.stray_per_100_images if on_clean is not None else float("nan")
            rows.append((figures.reject_recall, lowest, figures.stray_per_100_images, clean_rate))
    return np.array(rows)


def scene_of(bundle: Path, args: argparse.Namespace) -> Scene:
    scored = score_dataset(model=bundle, data=args.data, split=args.split, show_progress=False)
    dataset = read_dataset(args.data, class_names=scored.predictor.class_names)
    names = [r.path.name for r in apply_split(dataset, read_split(args.split))[1].images]
    if args.clean is None:
        return Scene(scored, names, [], [])
    canvases = load_canvases(args.clean, set(names))
    found = scored.predictor([c.image for c in canvases])
    clean = [Prediction(d.xyxy, d.scores, d.class_ids) for d in found]
    return Scene(scored, names, [c.tile.source for c in canvases], clean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", type=Path, nargs="+")
    parser.add_argument("--split", type=Path, default=Path("configs/splits/neu-det-dev.json"))
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("STEEL_DATA", "")) / "annotations")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clean", type=Path, help="`steel data background` folder: its val tiles join the calibration"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"out of sample: {args.repeats} random halvings of the val side of {args.split}, both ways\n")
    print(
        "| bundle | method | reject recall | lowest class (mean / worst) | strays per 100 images "
        "| strays per 100 clean tiles |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for bundle in args.bundles:
        scene = scene_of(bundle, args)
        for label, cfg in METHODS.items():
            r = out_of_sample(scene, cfg, args.repeats)
            clean = "-" if np.isnan(r[:, 3]).all() else f"{r[:, 3].mean():.1f} ± {r[:, 3].std():.1f}"
            print(
                f"| {bundle.name} | {label} | {r[:, 0].mean():.3f} | {r[:, 1].mean():.3f} / "
                f"{r[:, 1].min():.3f} | {r[:, 2].mean():.1f} ± {r[:, 2].std():.1f} | {clean} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
