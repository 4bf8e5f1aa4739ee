"""Benchmark: does a classical texture score beside the backbone Gaussian lift the anomaly AUROC?

Run from the repository root: ``.venv/bin/python bench/bench_anomaly_texture.py [--bundle models/neu-yolo-n]``

The shipped anomaly score (Gaussian of our detector's early features, 192 px) is weakest on
pitted_surface; GLCM statistics (``datasets/texture``) see that texture well. Both are fitted on the
clean training tiles only (the GLCM score is a Ledoit-Wolf Mahalanobis distance of standardised GLCM
vectors), each is turned into a z-score by its own clean *training* scores, and they are combined by
their maximum. Prints tile AUROC (validation defect images vs clean validation tiles) overall and per
class of the image's first box, and the GLCM vector's CPU ms per tile. Never asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.covariance import LedoitWolf  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from bench.bench_anomaly import bench_inputs  # noqa: E402
from datasets.background import read_gray_image  # noqa: E402
from datasets.texture.features import extract  # noqa: E402
from datasets.texture.settings import FeatureSettings  # noqa: E402
from training.anomaly.base import tile_score  # noqa: E402
from training.anomaly.calibrate import tile_scores  # noqa: E402
from training.anomaly.fit import fit_candidate  # noqa: E402
from training.anomaly.gaussian import FeatureGaussian  # noqa: E402

GLCM = FeatureSettings(groups=("glcm",))


def auroc(defect: np.ndarray, clean: np.ndarray) -> float:
    labels = np.r_[np.ones(len(defect)), np.zeros(len(clean))]
    return float(roc_auc_score(labels, np.r_[defect, clean]))


def glcm_scores(train: list[np.ndarray], *sets: list[np.ndarray]) -> list[np.ndarray]:
    """Mahalanobis distance of each image's GLCM vector from the clean training tiles' (train first)."""
    fit = np.array([extract(t, GLCM) for t in train])
    scaler = StandardScaler().fit(fit)
    cov = LedoitWolf().fit(scaler.transform(fit))
    return [cov.mahalanobis(scaler.transform(fit))] + [
        cov.mahalanobis(scaler.transform(np.array([extract(t, GLCM) for t in images]))) for images in sets
    ]


def glcm_ms_per_tile(images: list[np.ndarray]) -> float:
    start = time.process_time()
    for image in images:
        extract(image, GLCM)
    return (time.process_time() - start) * 1000.0 / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="models/neu-yolo-n")
    parser.add_argument("--tiles", default="runs/background/neu-dev")
    parser.add_argument("--split", default="configs/splits/neu-det-dev.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    val_set, clean, detector = bench_inputs(args.split, args.tiles, args.bundle)
    images = [read_gray_image(rec.found_path()) for rec in val_set.images]
    classes = np.array([rec.boxes[0].label for rec in val_set.images])
    scorer = fit_candidate("backbone-gaussian:3", detector, clean, ae_steps=0, fit_tiles=0, input_size=192)
    assert isinstance(scorer, FeatureGaussian)  # the backbone candidate is always the Gaussian
    scorer.use_onnxruntime(args.threads)
    backbone = [
        np.array(tile_scores(scorer, clean.train)),
        np.array(tile_scores(scorer, clean.val)),
        np.array([tile_score(m) for m in scorer.maps(images)]),
    ]
    glcm = glcm_scores(clean.train, clean.val, images)
    z = {
        name: [(s - train.mean()) / train.std() for s in (val, defect)]
        for name, (train, val, defect) in (("backbone Gaussian", backbone), ("GLCM", glcm))
    }
    z["max of the two z-scores"] = [np.maximum(a, b) for a, b in zip(*z.values(), strict=True)]
    names = sorted(set(classes))
    print(f"| score | tile AUROC | {' | '.join(names)} |")
    print("|---|--:|" + "--:|" * len(names))
    for name, (clean_z, defect_z) in z.items():
        per_class = [f"{auroc(defect_z[classes == c], clean_z):.3f}" for c in names]
        print(f"| {name} | {auroc(defect_z, clean_z):.3f} | {' | '.join(per_class)} |")
    print(f"\nGLCM vector: {glcm_ms_per_tile(clean.val[:64]):.2f} CPU ms per 200x200 tile")


if __name__ == "__main__":
    main()
