"""Anomaly scoring trained only on clean NEU-DET tiles: calibration, maps, storage without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datasets.background import read_gray_image
from datasets.settings import REPO_ROOT
from training.anomaly.base import tile_score
from training.anomaly.calibrate import anomaly_regions, false_alarms_per_1000, threshold_for_budget
from training.anomaly.features import EarlyBackbone
from training.anomaly.gaussian import FeatureGaussian
from training.anomaly.knn import FeatureKNN, kcenter_coreset
from training.anomaly.store import AnomalyStoreError, load_anomaly, save_anomaly
from training.bundle import load_bundle

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"


@pytest.mark.parametrize(
    ("scores", "per_1000", "expected"),
    [
        ([0.1, 0.5, 0.3, 0.9], 1.0, 0.9),  # 4 tiles: no alarm allowed, the highest score
        ([float(i) for i in range(2000)], 1.0, 1997.0),  # 2 alarms allowed of 2,000
        ([float(i) for i in range(2000)], 0.0, 1999.0),
        ([float(i) for i in range(1000)], 10.0, 989.0),
    ],
)
def test_threshold_lets_at_most_the_budgeted_share_of_clean_tiles_alarm(scores, per_1000, expected):
    threshold = threshold_for_budget(scores, per_1000)
    assert threshold == expected
    assert false_alarms_per_1000(scores, threshold) <= per_1000 or len(scores) < 1000 / max(per_1000, 1e-9)


def test_a_threshold_needs_clean_scores():
    with pytest.raises(ValueError, match="no clean scores"):
        threshold_for_budget([], 1.0)


@pytest.fixture(scope="module")
def gaussian(clean_and_defects):
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("shipped bundle models/neu-yolo-n not present")
    bundle = load_bundle(SHIPPED)
    canvases, _ = clean_and_defects
    extractor = EarlyBackbone(bundle.model.backbone, last_stage=3)
    return FeatureGaussian(extractor, input_size=bundle.image_size).fit(canvases)


def test_backbone_memory_maps_are_per_pixel_and_defects_peak_inside_their_boxes(gaussian, clean_and_defects):
    canvases, defects = clean_and_defects
    clean_scores = [tile_score(m) for m in gaussian.maps(canvases)]
    for rec in defects:
        image = read_gray_image(rec.path)
        (amap,) = gaussian.maps([image])
        assert amap.shape == image.shape and amap.dtype == np.float32
        inside = np.zeros(amap.shape, bool)
        for b in rec.boxes:
            inside[int(b.y1) : int(b.y2), int(b.x1) : int(b.x2)] = True
        assert amap[inside].mean() > amap[~inside].mean(), rec.name
        assert tile_score(amap) > np.median(clean_scores), rec.name


def test_regions_above_the_threshold_lie_on_the_defect(gaussian, clean_and_defects):
    canvases, defects = clean_and_defects
    # 50 per 1,000: a small fit on few tiles has a noisy maximum; the test is about where regions lie
    threshold = threshold_for_budget([tile_score(m) for m in gaussian.maps(canvases)], 50.0)
    rec = defects[1]  # a scratch (inclusions are the faintest class for this model: see the README)
    (amap,) = gaussian.maps([read_gray_image(rec.path)])
    regions = anomaly_regions(amap, threshold, min_area_px=16)
    assert regions, "the scratch should rise above all but 5 % of the clean tiles"
    top = regions[0].xyxy
    assert any(top[0] < b.x2 and b.x1 < top[2] and top[1] < b.y2 and b.y1 < top[3] for b in rec.boxes), (
        top,
        rec.boxes,
    )


def test_a_saved_model_reloads_without_pickle_and_scores_the_same(gaussian, clean_and_defects, tmp_path):
    canvases, _ = clean_and_defects
    extra = {"architecture": {"backbone_size": "n", "in_channels": 1}, "threshold": {"score": 3.0}}
    assert not any(k.startswith("stage4.") for k in gaussian.extractor.feature_state())
    save_anomaly(tmp_path, gaussian, version="test", extra=extra)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anomaly.json", "anomaly.safetensors"]
    model = load_anomaly(tmp_path, backend="torch")
    assert model.threshold == 3.0
    np.testing.assert_allclose(model.scorer.maps(canvases[:2])[0], gaussian.maps(canvases[:2])[0], rtol=1e-5)


def test_under_onnx_runtime_a_loaded_model_scores_as_torch_does(gaussian, clean_and_defects, tmp_path):
    """The daemon's default (``backend: auto``): backbone stages and distances in one ONNX graph."""
    pytest.importorskip("onnxruntime")
    canvases, defects = clean_and_defects
    extra = {"architecture": {"backbone_size": "n", "in_channels": 1}, "threshold": {"score": 3.0}}
    save_anomaly(tmp_path, gaussian, version="test", extra=extra)
    model = load_anomaly(tmp_path)
    assert isinstance(model.scorer, FeatureGaussian) and model.scorer.distance_runner is not None
    tiles = [*canvases[:3], read_gray_image(defects[1].path)]
    for got, want in zip(model.scorer.maps(tiles), gaussian.maps(tiles), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.max()))


def test_the_coreset_takes_one_patch_from_each_far_apart_cluster():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0] * 8, [50.0] * 8, [-50.0] * 8], np.float32)
    patches = np.concatenate([c + rng.normal(size=(100, 8)).astype(np.float32) for c in centres])
    picked = kcenter_coreset(patches, 3)
    assert sorted(int(i) // 100 for i in picked) == [0, 1, 2]
    assert len(kcenter_coreset(patches, 1000)) == len(patches)  # asking for more keeps them all


def test_a_nearest_neighbour_memory_peaks_inside_the_defect_boxes(gaussian, clean_and_defects):
    canvases, defects = clean_and_defects
    knn = FeatureKNN(gaussian.extractor, input_size=gaussian.input_size).fit(canvases, memory_size=500)
    assert knn.memory is not None and knn.memory.shape == (500, 96)
    rec = defects[1]
    (amap,) = knn.maps([read_gray_image(rec.path)])
    inside = np.zeros(amap.shape, bool)
    for b in rec.boxes:
        inside[int(b.y1) : int(b.y2), int(b.x1) : int(b.x2)] = True
    assert amap[inside].mean() > amap[~inside].mean()
    assert tile_score(amap) > np.median([tile_score(m) for m in knn.maps(canvases)])


def test_a_model_whose_tensors_were_changed_is_refused_naming_the_file(gaussian, tmp_path):
    save_anomaly(
        tmp_path, gaussian, version="t", extra={"architecture": {"backbone_size": "n", "in_channels": 1}}
    )
    data = bytearray((tmp_path / "anomaly.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "anomaly.safetensors").write_bytes(bytes(data))
    with pytest.raises(AnomalyStoreError, match="anomaly.safetensors"):
        load_anomaly(tmp_path)


def test_a_manifest_of_unknown_kind_is_refused_naming_the_field(gaussian, tmp_path):
    save_anomaly(
        tmp_path, gaussian, version="t", extra={"architecture": {"backbone_size": "n", "in_channels": 1}}
    )
    manifest = json.loads((tmp_path / "anomaly.json").read_text())
    manifest["kind"] = "gan"
    (tmp_path / "anomaly.json").write_text(json.dumps(manifest))
    with pytest.raises(AnomalyStoreError, match="kind 'gan'"):
        load_anomaly(tmp_path)
