"""The anomaly stage on real NEU-DET frames: unexplained anomalous regions become ``anomaly`` defects,
regions a detection covers do not, and calibrated per-class thresholds are applied."""

from __future__ import annotations

import json
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
from tests.inspection.daemon_fixtures import query, run_cli, sqlite_db, strip_spec
from training.anomaly.base import tile_score
from training.anomaly.calibrate import threshold_for_budget
from training.anomaly.features import EarlyBackbone
from training.anomaly.gaussian import FeatureGaussian
from training.anomaly.store import save_anomaly
from training.anomaly.texture import GlcmMemory, TextureFusedScorer
from training.anomaly.window_mean import WindowFusedScorer, WindowMeanMemory, grid_side
from training.bundle import load_bundle

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
NAMES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture(scope="module")
def clean_canvases(neu_root, tmp_path_factory) -> list[np.ndarray]:
    """Clean tiles of every 12th inclusion/scratches image (a small fit: the tests are about the stage)."""
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("shipped bundle models/neu-yolo-n not present")
    return clean_tiles.clean_canvases(neu_root, ("inclusion", "scratches"), tmp_path_factory.mktemp("tiles"))


def _saved(
    scorer: FeatureGaussian | TextureFusedScorer | WindowFusedScorer, canvases: list[np.ndarray], out: Path
) -> Path:
    """``scorer`` saved with its threshold at 50 per 1,000 of the clean tiles it was fitted on."""
    threshold = threshold_for_budget([tile_score(m) for m in scorer.maps(canvases)], 50.0)
    arch = {"backbone_size": "n", "in_channels": 1}
    extra = {"architecture": arch, "threshold": {"score": threshold}}
    return save_anomaly(out, scorer, version=f"test-{scorer.kind}", extra=extra)


@pytest.fixture(scope="module")
def anomaly_dir(clean_canvases, tmp_path_factory) -> Path:
    """A backbone-Gaussian fitted on the clean canvases."""
    bundle = load_bundle(SHIPPED)
    gaussian = FeatureGaussian(EarlyBackbone(bundle.model.backbone), input_size=bundle.image_size)
    return _saved(gaussian.fit(clean_canvases), clean_canvases, tmp_path_factory.mktemp("anomaly"))


def _stage(anomaly_dir, manifest=None) -> AnomalyStage:
    stage = AnomalyStage(
        BoundedQueue("in", 4),
        BoundedQueue("out", 4),
        cfg=AnomalyStageConfig(min_area_px=16),
        model_path=anomaly_dir,
        tile_hw=(200, 200),
        overlap_hw=(0, 0),
        anomaly_class_id=len(NAMES),
        class_names=NAMES,
        detector_manifest=lambda: manifest or {},
        abort=threading.Event(),
    )
    stage.load()
    return stage


def _frame(neu_root, name: str, detections: Detections) -> FrameDetections:
    image = read_gray_image(neu_root / "images" / name)
    frame = Frame("test", 1, image, datetime.now(UTC))
    return FrameDetections(frame=frame, detections=detections, model_version="m1", latency_ms=0.0)


def _scratch_image(neu_root) -> str:
    aset = read_dataset(neu_root / "annotations")
    fitted = {im.name for im in aset.images if im.name.startswith("scratches")}
    return sorted(fitted)[1]


def test_an_unexplained_anomalous_region_becomes_an_anomaly_detection(neu_root, anomaly_dir):
    stage = _stage(anomaly_dir)
    (out,) = stage.handle(_frame(neu_root, _scratch_image(neu_root), Detections.empty()))
    anomalies = out.detections[np.flatnonzero(out.detections.class_ids == len(NAMES))]
    assert len(anomalies) >= 1
    assert (anomalies.scores > 0.5).all() and (anomalies.scores < 1.0).all()  # s / (s + threshold)
    assert out.frame.meta["anomaly_score"] > stage.threshold
    assert stage.tally.to_dict()["anomaly_defects"] == len(anomalies)


def test_a_region_a_detection_covers_is_not_an_anomaly(neu_root, anomaly_dir):
    stage = _stage(anomaly_dir)
    whole = Detections(np.array([[0, 0, 200, 200]], np.float32), np.array([0.9], np.float32), np.array([5]))
    (out,) = stage.handle(_frame(neu_root, _scratch_image(neu_root), whole))
    assert out.detections.class_ids.tolist() == [5]
    assert stage.tally.regions >= 1 and stage.tally.explained == stage.tally.regions


def test_calibrated_class_thresholds_from_the_manifest_drop_weaker_detections(neu_root, anomaly_dir):
    manifest = {"thresholds": {"score": 0.25, "per_class": {n: 0.6 for n in NAMES}}}
    stage = _stage(anomaly_dir, manifest)
    dets = Detections(
        np.array([[0, 0, 200, 200], [0, 0, 200, 200]], np.float32), np.array([0.9, 0.4], np.float32), [5, 1]
    )
    (out,) = stage.handle(_frame(neu_root, _scratch_image(neu_root), dets))
    kept = out.detections[np.flatnonzero(out.detections.class_ids < len(NAMES))]
    assert kept.scores.tolist() == pytest.approx([0.9])


def _glcm_fused(gaussian: FeatureGaussian) -> TextureFusedScorer:
    return TextureFusedScorer(gaussian, GlcmMemory())


def _window_fused(gaussian: FeatureGaussian) -> WindowFusedScorer:
    return WindowFusedScorer(gaussian, WindowMeanMemory.for_grid(grid_side(gaussian.input_size)))


@pytest.mark.parametrize("second_memory", [_glcm_fused, _window_fused], ids=["glcm", "window-mean"])
def test_with_a_texture_memory_pitted_steel_the_backbone_memory_misses_becomes_an_anomaly(
    neu_root, clean_canvases, anomaly_dir, tmp_path, second_memory
):
    bundle = load_bundle(SHIPPED)
    gaussian = FeatureGaussian(EarlyBackbone(bundle.model.backbone), input_size=bundle.image_size)
    fused = _saved(second_memory(gaussian).fit(clean_canvases), clean_canvases, tmp_path)
    aset = read_dataset(neu_root / "annotations")
    pitted = [im.name for im in aset.images if im.name.startswith("pitted_surface")][:12]
    flagged = {}
    for name, folder in (("backbone", anomaly_dir), ("fused", fused)):
        stage = _stage(folder)
        for image in pitted:
            stage.handle(_frame(neu_root, image, Detections.empty()))
        flagged[name] = stage.tally.above_threshold_frames
        # no detections here: every region becomes a defect (a frame just above can hold none >= min_area_px)
        assert stage.tally.anomaly_defects == stage.tally.regions >= stage.tally.above_threshold_frames - 1
    assert flagged["fused"] > flagged["backbone"] and flagged["fused"] >= 10, flagged


def test_the_shipped_anomaly_model_is_silent_on_clean_steel_and_flags_most_patches_at_its_threshold(
    neu_root, clean_canvases
):
    """At the threshold calibrated into ``models/neu-yolo-n/anomaly`` (1 false alarm per 1,000 clean
    training tiles): no clean canvas is above it, most validation images of patches are."""
    stage = _stage(SHIPPED / "anomaly")
    assert len(clean_canvases) >= 20
    for k, canvas in enumerate(clean_canvases):
        frame = Frame("clean", k, canvas, datetime.now(UTC))
        stage.handle(
            FrameDetections(frame=frame, detections=Detections.empty(), model_version="m1", latency_ms=0)
        )
    assert stage.tally.above_threshold_frames == 0 and stage.tally.anomaly_defects == 0
    split = json.loads((REPO_ROOT / "configs" / "splits" / "neu-det-dev.json").read_text())
    patches = [item["name"] for item in split["val"] if item["name"].startswith("patches")][:16]
    flagged = _stage(SHIPPED / "anomaly")
    for name in patches:
        flagged.handle(_frame(neu_root, name, Detections.empty()))
    assert flagged.tally.above_threshold_frames >= len(patches) // 2, flagged.tally.to_dict()
    assert flagged.tally.anomaly_defects >= flagged.tally.above_threshold_frames


def test_without_an_anomaly_model_frames_pass_through_unchanged(neu_root):
    stage = _stage(None)
    msg = _frame(neu_root, _scratch_image(neu_root), Detections.empty())
    assert stage.handle(msg) == [msg]
    assert stage.tally.to_dict()["frames_scored"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bundle", "kind"),
    [
        (SHIPPED, "backbone-gaussian-window-s3"),
        (REPO_ROOT / "models" / "neu-yolo-n-bg30-s0", "backbone-gaussian-window-s3"),
    ],
)
def test_steel_inspect_once_json_reports_anomaly_scores_of_every_frame(tmp_path, bundle, kind):
    """Each shipped bundle carries its anomaly model (``<bundle>/anomaly``): every frame is scored by it."""
    if not (bundle / "anomaly" / "anomaly.json").is_file():
        pytest.skip(f"{bundle} has no anomaly model")
    db = sqlite_db(tmp_path)
    source = strip_spec(across=2, along=4)
    args = ["--once", "--json", "--db", db, "--model", str(bundle), "--source", source]
    result = run_cli(*args, "--set", f"output.dir={tmp_path / 'out'}", "--set", "detector.threads=1")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    anomalies = summary["anomalies"]
    assert anomalies["frames_scored"] == summary["frames"] == 3
    assert anomalies["model_version"].startswith(kind)
    assert 0 < anomalies["score_p50"] <= anomalies["score_max"]
    stored = dict(query(db, "SELECT class_name, COUNT(*) FROM defects GROUP BY class_name"))
    assert stored.get("anomaly", 0) == anomalies["anomaly_defects"]
