"""The window memory beside the patch Gaussian: layout, texture defects, the fused map, ONNX parity,
storage. Real NEU-DET images and clean canvases cut from them; the shipped detector's backbone."""

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
from training.anomaly.window_mean import WindowFusedScorer, WindowMeanMemory, grid_side
from training.backends import ort_available
from training.bundle import load_bundle, sha256_file

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
INPUT_PX = 176
EXTRA = {"architecture": {"backbone_size": "n", "in_channels": 1}, "threshold": {"score": 40.0}}


@pytest.mark.parametrize(("grid", "cells", "starts"), [(24, 15, [0, 9]), (22, 14, [0, 8]), (20, 12, [0, 8])])
def test_two_windows_each_way_cover_five_eighths_of_the_grid_and_the_second_is_flush_with_the_edge(
    grid, cells, starts
):
    memory = WindowMeanMemory.for_grid(grid)
    assert memory.cells == cells
    assert memory.origins(grid) == [(y, x) for y in starts for x in starts]
    assert starts[-1] + cells == grid


def test_a_feature_cell_takes_the_highest_distance_of_the_windows_covering_it():
    memory = WindowMeanMemory.for_grid(24)  # windows at (0,0) (0,9) (9,0) (9,9), 15 cells a side
    (grid,) = memory.grid_maps(np.array([[1.0, 2.0, 3.0, 4.0]]), 24)
    assert grid.shape == (24, 24)
    assert grid[0, 0] == 1.0 and grid[0, 23] == 2.0 and grid[23, 0] == 3.0 and grid[23, 23] == 4.0
    assert grid[0, 12] == 2.0 and grid[12, 12] == 4.0  # covered by two / by all four windows


def test_window_layouts_that_cannot_step_are_refused():
    with pytest.raises(ValueError, match="cells 4 and step 5 need 0 < step <= cells"):
        WindowMeanMemory(cells=4, step=5)


@pytest.fixture(scope="module")
def pitted(neu_root) -> list[np.ndarray]:
    """pitted_surface images: the class whose texture the patch memory sees worst."""
    aset = read_dataset(neu_root / "annotations")
    return [read_gray_image(im.path) for im in aset.images if im.name.startswith("pitted_surface")][:8]


@pytest.fixture(scope="module")
def fused(clean_and_defects) -> WindowFusedScorer:
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip("shipped bundle models/neu-yolo-n not present")
    bundle = load_bundle(SHIPPED)
    canvases, _ = clean_and_defects
    gaussian = FeatureGaussian(EarlyBackbone(bundle.model.backbone), input_size=INPUT_PX)
    window = WindowMeanMemory.for_grid(grid_side(INPUT_PX))
    return WindowFusedScorer(gaussian, window).fit(canvases)


def test_the_window_memory_lifts_pitted_steel_above_the_clean_tiles_the_patch_memory_confuses_it_with(
    fused, clean_and_defects, pitted
):
    canvases, _ = clean_and_defects
    clean_fused = np.array([tile_score(m) for m in fused.maps(canvases)])
    clean_patch = np.array([tile_score(m) for m in fused.gaussian.maps(canvases)])
    pitted_fused = np.array([tile_score(m) for m in fused.maps(pitted)])
    pitted_patch = np.array([tile_score(m) for m in fused.gaussian.maps(pitted)])
    ranked = (pitted_fused[:, None] > clean_fused[None, :]).mean()
    ranked_patch = (pitted_patch[:, None] > clean_patch[None, :]).mean()
    assert ranked > ranked_patch and ranked > 0.9, (ranked, ranked_patch)


def test_the_fused_map_is_the_patch_map_lifted_evenly_inside_a_window_never_lowered(fused, pitted):
    lifted = 0
    for got, patch in zip(fused.maps(pitted[:4]), fused.gaussian.maps(pitted[:4]), strict=True):
        assert got.shape == patch.shape == pitted[0].shape and got.dtype == np.float32
        lift = got - patch
        assert lift.min() >= -1e-3
        corner = lift[:50, :50]  # only the top-left window covers it (cells 0-7 of 22; blur included)
        assert corner.max() - corner.min() < 1e-3 * (1.0 + abs(corner.max()))  # the patch map's shape
        lifted += int(lift.max() > 1.0)
    assert lifted >= 1  # pitted steel: some window sits above clean steel's windows


def test_a_saved_window_model_reloads_without_pickle_and_scores_the_same(fused, pitted, tmp_path):
    save_anomaly(tmp_path, fused, version="window-test", extra=dict(EXTRA))
    manifest = json.loads((tmp_path / "anomaly.json").read_text())
    assert manifest["kind"] == "backbone-gaussian+window"
    assert manifest["architecture"]["window"] == {"cells": 14, "step": 8}
    model = load_anomaly(tmp_path, backend="torch")
    assert isinstance(model.scorer, WindowFusedScorer) and model.threshold == 40.0
    for got, want in zip(model.scorer.maps(pitted[:2]), fused.maps(pitted[:2]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not ort_available(), reason="onnxruntime is not installed")
def test_one_onnx_runtime_graph_gives_the_maps_torch_gives(fused, pitted, clean_and_defects, tmp_path):
    save_anomaly(tmp_path, fused, version="window-test", extra=dict(EXTRA))
    model = load_anomaly(tmp_path, backend="auto", threads=1)
    assert isinstance(model.scorer, WindowFusedScorer) and model.scorer.runner is not None
    canvases, _ = clean_and_defects
    tiles = pitted[:4] + canvases[:4]
    for got, want in zip(model.scorer.maps(tiles), fused.maps(tiles), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-2)


def _saved_with(tmp_path, fused, edit) -> None:
    save_anomaly(tmp_path, fused, version="window-test", extra=dict(EXTRA))
    weights = tmp_path / "anomaly.safetensors"
    tensors = load_file(str(weights))
    manifest = json.loads((tmp_path / "anomaly.json").read_text())
    edit(tensors, manifest)
    save_file(tensors, str(weights))
    manifest["weights"]["sha256"] = sha256_file(weights)  # a consistent, but wrong, folder
    (tmp_path / "anomaly.json").write_text(json.dumps(manifest))


def test_window_arrays_that_do_not_fit_the_feature_dims_are_refused_by_name(fused, tmp_path):
    def drop_a_row(tensors, _manifest):
        tensors["window.precision"] = tensors["window.precision"][:-1]

    _saved_with(tmp_path, fused, drop_a_row)
    with pytest.raises(AnomalyStoreError, match=r"window\.precision: shape \(95, 96\), expected \(96, 96\)"):
        load_anomaly(tmp_path, backend="torch")


def test_a_window_scale_of_zero_spread_in_the_json_is_refused(fused, tmp_path):
    def zero_spread(_tensors, manifest):
        manifest["architecture"]["fusion"]["window_std"] = 0.0

    _saved_with(tmp_path, fused, zero_spread)
    with pytest.raises(AnomalyStoreError, match="std 0.0 must be finite, std > 0"):
        load_anomaly(tmp_path, backend="torch")
