"""Choosing a threshold per class on real NEU-DET boxes, with scores set by hand so each case can be
checked on paper: the ``recall`` method's image recall per class and the ``f1`` method's best F1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.model import NEU_DET_CLASSES
from training.evaluation import GroundTruth, Prediction
from training.operating_point import CalibrationConfig, calibrate

from .test_line_figures import voc_truth

CRAZING, INCLUSION = NEU_DET_CLASSES.index("crazing"), NEU_DET_CLASSES.index("inclusion")


@pytest.fixture
def crazing_images(neu_root: Path) -> list[GroundTruth]:
    return [voc_truth(neu_root, f"crazing_{i}") for i in (1, 2, 5, 10)]


def on_box(gt: GroundTruth, score: float, label: int = CRAZING) -> Prediction:
    return Prediction(gt.boxes[:1].copy(), [score], [label])


@pytest.fixture
def found_at(crazing_images) -> list[Prediction]:
    """Crazing found at 0.9, 0.6 and 0.3; the fourth image has only a confident crazing box far from its
    defect (a stray, which finds nothing) and an inclusion box on the defect (the wrong class)."""
    g1, g2, g3, g4 = crazing_images
    stray = [190.0, 190.0, 199.0, 199.0]
    fourth = Prediction(np.array([stray, g4.boxes[0]]), [0.95, 0.99], [CRAZING, INCLUSION])
    return [on_box(g1, 0.9), on_box(g2, 0.6), on_box(g3, 0.3), fourth]


@pytest.mark.parametrize(
    ("target", "floor", "threshold", "achieved"),
    [
        (0.5, 0.05, 0.6, 0.5),  # 2 of 4 images from 0.6 on
        (0.75, 0.05, 0.3, 0.75),
        (0.7, 0.05, 0.3, 0.75),  # 0.7 of 4 images needs 3
        (1.0, 0.05, 0.3, 0.75),  # out of reach: every image that can be found, no lower
        (0.75, 0.4, 0.4, 0.5),  # the floor wins, and the recall it costs is reported
    ],
)
def test_recall_method_picks_the_highest_threshold_reaching_the_target(
    crazing_images, found_at, target, floor, threshold, achieved
):
    cfg = CalibrationConfig(method="recall", target_recall=target, floor=floor)
    point = calibrate(crazing_images, found_at, NEU_DET_CLASSES, cfg)
    assert point.per_class["crazing"] == pytest.approx(threshold)
    assert point.achieved["crazing"] == pytest.approx(achieved)


def test_classes_without_images_take_the_strictest_seen_threshold(crazing_images, found_at):
    point = calibrate(crazing_images, found_at, NEU_DET_CLASSES, CalibrationConfig(method="recall"))
    assert point.achieved["scratches"] is None and point.achieved["inclusion"] is None
    assert point.per_class["scratches"] == point.per_class["crazing"] == pytest.approx(0.3)
    assert list(point.per_class) == list(NEU_DET_CLASSES) and point.images == 4


def test_f1_method_picks_the_best_box_f1_threshold(crazing_images):
    g1, g2, g3, _ = crazing_images
    miss = [150.0, 150.0, 160.0, 160.0]
    preds = [
        on_box(g1, 0.9),  # TP
        Prediction(np.array([miss]), [0.8], [CRAZING]),  # FP: IoU 0.02 with crazing_2's first box
        on_box(g3, 0.5),  # TP
    ]
    gts = [GroundTruth(g.boxes[:1], g.labels[:1]) for g in (g1, g2, g3)]
    # From 0.9: P 1, R 1/3 -> F1 .5; from 0.8: P .5, R 1/3 -> .4; from 0.5: P 2/3, R 2/3 -> .667
    point = calibrate(gts, preds, NEU_DET_CLASSES, CalibrationConfig(method="f1"))
    assert point.per_class["crazing"] == pytest.approx(0.5)
    assert point.achieved["crazing"] == pytest.approx(2 / 3)


def test_thresholds_are_rounded_down_so_the_calibrating_score_stays_kept(crazing_images):
    preds = [on_box(g, 0.123456) for g in crazing_images]
    point = calibrate(crazing_images, preds, NEU_DET_CLASSES, CalibrationConfig(method="recall"))
    assert point.per_class["crazing"] == 0.1234
