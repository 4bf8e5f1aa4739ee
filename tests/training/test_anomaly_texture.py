"""The GLCM texture memory beside the backbone Gaussian: windows, texture defects, fusion, storage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from datasets.background import read_gray_image
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT
from training.anomaly.base import tile_score
from training.anomaly.features import EarlyBackbone
from training.anomaly.gaussian import FeatureGaussian
from training.anomaly.store import AnomalyStoreError, load_anomaly, save_anomaly
from training.anomaly.texture import GlcmMemory, TextureFusedScorer, window_starts
from training.bundle import load_bundle, sha256_file

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"


@pytest.mark.parametrize(
    ("length", "window", "step", "expected"),
    [
        (200, 128, 128, [0, 72]),
        (200, 128, 64, [0, 64, 72]),
        (256, 128, 64, [0, 64, 128]),
        (100, 128, 128, [0]),
        (128, 128, 128, [0]),
    ],
)
def test_windows_step_across_the_tile_and_the_last_one_is_flush_with_the_edge(length, window, step, expected):
    assert window_starts(length, window, step) == expected


@pytest.fixture(scope="module")
def pitted(neu_root) -> list[np.ndarray]:
    """pitted_surface images: the class whose texture the backbone memory sees worst."""
    aset = read_dataset(neu_root / "annotations")
    return [read_gray_image(im.path) for im in aset.images if im.name.startswith("pitted_surface")][:8]


@pytest.fixture(scope="module")
def glcm(clean_and_defects) -> GlcmMemory:
    canvases, _ = clean_and_defects
    return GlcmMemory().fit(canvases)


def test_pitted_steel_is_far_from_clean_steel_in_co_occurrence_statistics(glcm, clean_and_defects, pitted):
    canvases, _ = clean_and_defects
    clean = [tile_score(m) for m in glcm.maps(canvases)]
    scores = [tile_score(m) for m in glcm.maps(pitted)]
    assert np.median(scores) > np.percentile(clean, 95), (np.median(scores), np.percentile(clean, 95))


def test_a_pixel_scores_as_the_worst_window_covering_it(glcm, pitted):
    image = pitted[0]
    (amap,) = glcm.maps([image])
    windows = glcm.window_scores(image)
    assert amap.shape == image.shape and len(windows) == 4  # 200 px: origins 0 and 72 each way
    y, x, worst = max(windows, key=lambda w: w[2])
    assert amap[y + 64, x + 64] == pytest.approx(worst, rel=1e-6)
    assert amap.max() == pytest.approx(worst, rel=1e-6)
    assert amap.min() >= min(d for _, _, d in windows) * (1 - 1e-6)


@pytest.fixture(scope="module")
def fused(clean_and_defects) -> TextureFusedScorer:
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("shipped bundle models/neu-yolo-n not present")
    bundle = load_bundle(SHIPPED)
    canvases, _ = clean_and_defects
    gaussian = FeatureGaussian(EarlyBackbone(bundle.model.backbone), input_size=bundle.image_size)
    return TextureFusedScorer(gaussian, GlcmMemory()).fit(canvases)


def test_the_fused_map_is_never_below_the_backbone_map_and_keeps_its_units(fused, pitted):
    fused_maps = fused.maps(pitted[:3])
    backbone_maps = fused.gaussian.maps(pitted[:3])
    for got, backbone in zip(fused_maps, backbone_maps, strict=True):
        assert got.shape == backbone.shape and got.dtype == np.float32
        assert (got >= backbone).all()
    assert fused.backbone_scale is not None and fused.backbone_scale.mean > 0  # a distance, not a z-score


def test_texture_lifts_pitted_steel_above_the_clean_tiles_the_backbone_confuses_it_with(
    fused, clean_and_defects, pitted
):
    canvases, _ = clean_and_defects
    clean_fused = np.array([tile_score(m) for m in fused.maps(canvases)])
    clean_backbone = np.array([tile_score(m) for m in fused.gaussian.maps(canvases)])
    pitted_fused = np.array([tile_score(m) for m in fused.maps(pitted)])
    pitted_backbone = np.array([tile_score(m) for m in fused.gaussian.maps(pitted)])
    ranked = (pitted_fused[:, None] > clean_fused[None, :]).mean()
    ranked_backbone = (pitted_backbone[:, None] > clean_backbone[None, :]).mean()
    assert ranked > ranked_backbone and ranked > 0.9, (ranked, ranked_backbone)


def test_a_saved_fused_model_reloads_without_pickle_and_scores_the_same(fused, pitted, tmp_path):
    extra = {"architecture": {"backbone_size": "n", "in_channels": 1}, "threshold": {"score": 30.0}}
    save_anomaly(tmp_path, fused, version="fused-test", extra=extra)
    manifest = json.loads((tmp_path / "anomaly.json").read_text())
    assert manifest["kind"] == "backbone-gaussian+glcm"
    assert manifest["architecture"]["glcm"]["window_px"] == 128
    model = load_anomaly(tmp_path, backend="torch")
    assert isinstance(model.scorer, TextureFusedScorer) and model.threshold == 30.0
    for got, want in zip(model.scorer.maps(pitted[:2]), fused.maps(pitted[:2]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_glcm_arrays_that_do_not_fit_the_feature_settings_are_refused_by_name(fused, tmp_path):
    extra = {"architecture": {"backbone_size": "n", "in_channels": 1}, "threshold": {"score": 30.0}}
    save_anomaly(tmp_path, fused, version="fused-test", extra=extra)
    weights = tmp_path / "anomaly.safetensors"
    tensors = load_file(str(weights))
    tensors["glcm.precision"] = tensors["glcm.precision"][:-1]  # one row lost
    save_file(tensors, str(weights))
    manifest = json.loads((tmp_path / "anomaly.json").read_text())
    manifest["weights"]["sha256"] = sha256_file(weights)  # a consistent, but wrong, file
    (tmp_path / "anomaly.json").write_text(json.dumps(manifest))
    with pytest.raises(AnomalyStoreError, match=r"glcm\.precision: shape \(29, 30\), expected \(30, 30\)"):
        load_anomaly(tmp_path, backend="torch")


def test_a_fusion_scale_of_zero_spread_in_the_json_is_refused(fused, tmp_path):
    extra = {"architecture": {"backbone_size": "n", "in_channels": 1}, "threshold": {"score": 30.0}}
    save_anomaly(tmp_path, fused, version="fused-test", extra=extra)
    manifest = json.loads((tmp_path / "anomaly.json").read_text())
    manifest["architecture"]["fusion"]["glcm_std"] = 0.0
    (tmp_path / "anomaly.json").write_text(json.dumps(manifest))
    with pytest.raises(AnomalyStoreError, match="std 0.0 must be finite, std > 0"):
        load_anomaly(tmp_path, backend="torch")
