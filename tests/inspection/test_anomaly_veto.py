"""The anomaly map as a second opinion: a detection on steel that looks like clean steel is dropped, one on a
real NEU-DET defect stands, and the level comes from the model (or the config) or is switched off."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from datasets.background import read_gray_image
from datasets.detections import Detections
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT
from inspection.messages import Frame, FrameDetections
from inspection.queues import BoundedQueue
from inspection.stages.anomaly import AnomalyStage, AnomalyStageConfig
from tests.inspection import clean_tiles
from training.anomaly.base import box_evidence, tile_score
from training.anomaly.calibrate import evidence_level
from training.anomaly.store import load_anomaly

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
NAMES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
INCLUSION = NAMES.index("inclusion")


@pytest.fixture(scope="module")
def clean_canvases(neu_root, tmp_path_factory) -> list[np.ndarray]:
    """Real clean tiles cut by the background rule from every 12th patches/scratches image."""
    if not (SHIPPED / "anomaly" / "anomaly.json").is_file():
        pytest.skip("shipped anomaly model models/neu-yolo-n/anomaly not present")
    return clean_tiles.clean_canvases(neu_root, ("patches", "scratches"), tmp_path_factory.mktemp("tiles"))


def _stage(cfg: AnomalyStageConfig) -> AnomalyStage:
    stage = AnomalyStage(
        BoundedQueue("in", 4),
        BoundedQueue("out", 4),
        cfg=cfg,
        model_path=SHIPPED / "anomaly",
        tile_hw=(200, 200),
        overlap_hw=(0, 0),
        anomaly_class_id=len(NAMES),
        class_names=NAMES,
        detector_manifest=dict,
        abort=threading.Event(),
    )
    stage.load()
    return stage


def _message(image: np.ndarray, boxes: list[list[float]], class_id: int) -> FrameDetections:
    dets = Detections(
        np.array(boxes, np.float32), np.full(len(boxes), 0.9, np.float32), np.full(len(boxes), class_id)
    )
    frame = Frame("test", 1, image, datetime.now(UTC))
    return FrameDetections(frame=frame, detections=dets, model_version="m1", latency_ms=0.0)


def _calmest(canvases: list[np.ndarray]) -> np.ndarray:
    scorer = load_anomaly(SHIPPED / "anomaly").scorer
    return canvases[int(np.argmin([tile_score(m) for m in scorer.maps(canvases)]))]


def _defect(neu_root: Path, prefix: str) -> tuple[np.ndarray, list[list[float]], int]:
    aset = read_dataset(neu_root / "annotations")
    image = next(im for im in aset.images if im.name.startswith(prefix) and im.boxes)
    return (
        read_gray_image(image.found_path()),
        [list(b.xyxy) for b in image.boxes],
        NAMES.index(image.boxes[0].label),
    )


def test_the_shipped_model_stores_a_level_that_clean_tiles_straddle_far_below_its_alarm(clean_canvases):
    model = load_anomaly(SHIPPED / "anomaly")
    assert model.detection_evidence is not None and 0 < model.detection_evidence < 0.5 * (
        model.threshold or 0
    )
    scores = [tile_score(m) for m in model.scorer.maps(clean_canvases)]
    # the median of all clean training tiles; these (patches/scratches images only) sit a little higher
    assert 0.1 <= float(np.mean(np.array(scores) < model.detection_evidence)) <= 0.9


def test_a_detection_on_calm_clean_steel_is_dropped_and_one_on_a_real_defect_stands(neu_root, clean_canvases):
    stage = _stage(AnomalyStageConfig())  # the level stored with the shipped model
    (clean,) = stage.handle(_message(_calmest(clean_canvases), [[50, 50, 150, 150]], INCLUSION))
    assert len(clean.detections) == 0 and stage.tally.vetoed_detections == 1
    for prefix in ("scratches", "patches", "inclusion"):
        image, boxes, class_id = _defect(neu_root, prefix)
        (out,) = stage.handle(_message(image, boxes, class_id))
        assert (out.detections.class_ids == class_id).sum() == len(boxes), prefix
    summary = stage.tally.to_dict()
    assert (
        summary["detections_vetoed"] == 1 and summary["detection_evidence"] == stage.tally.detection_evidence
    )


def test_with_the_veto_off_or_a_level_of_zero_nothing_is_dropped(clean_canvases):
    calm = _calmest(clean_canvases)
    for cfg in (AnomalyStageConfig(veto_detections=False), AnomalyStageConfig(detection_evidence=0.0)):
        stage = _stage(cfg)
        (out,) = stage.handle(_message(calm, [[50, 50, 150, 150]], INCLUSION))
        assert len(out.detections) == 1 and stage.tally.vetoed_detections == 0


def test_a_level_from_the_config_wins_over_the_stored_one(clean_canvases):
    calm = _calmest(clean_canvases)
    stage = _stage(AnomalyStageConfig(detection_evidence=1e6))
    assert stage.tally.detection_evidence == 1e6
    (out,) = stage.handle(_message(calm, [[0, 0, 200, 200]], INCLUSION))
    assert len(out.detections) == 0


def test_box_evidence_is_the_peak_inside_each_box_and_a_degenerate_box_reads_one_pixel():
    amap = np.zeros((20, 30), np.float32)
    amap[5, 25] = 7.0
    boxes = np.array(
        [[20, 0, 30, 10], [0, 0, 10, 10], [25.2, 5.1, 25.2, 5.1], [-5, -5, 100, 100]], np.float32
    )
    assert box_evidence(boxes, amap).tolist() == [7.0, 0.0, 7.0, 7.0]
    assert box_evidence(np.zeros((0, 4), np.float32), amap).shape == (0,)


def test_the_evidence_level_is_a_quantile_of_clean_scores_and_bad_input_is_named():
    assert evidence_level([1.0, 2.0, 3.0, 4.0, 5.0]) == 3.0
    assert evidence_level([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0
    with pytest.raises(ValueError, match="no clean scores"):
        evidence_level([])
    with pytest.raises(ValueError, match="quantile: 1.5"):
        evidence_level([1.0], 1.5)
