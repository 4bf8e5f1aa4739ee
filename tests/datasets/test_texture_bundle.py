"""Classical bundles: a round trip keeps every prediction; hostile bundles are refused with the file and
field named; the per-group contributions add up to the model's logits."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from datasets.texture.bundle import (
    MANIFEST,
    WEIGHTS,
    ClassicBundleError,
    load_classic_bundle,
    save_classic_bundle,
)
from datasets.texture.explain import explain_features
from datasets.texture.linear import LinearTextureModel
from datasets.texture.settings import FeatureSettings

SETTINGS = FeatureSettings(groups=("histogram", "hog"), histogram_bins=4, hog_orientations=3)  # 8 + 6 columns
CLASSES = ("crazing", "patches", "scratches")


def _model(seed: int = 0) -> LinearTextureModel:
    rng = np.random.default_rng(seed)
    n = SETTINGS.length
    return LinearTextureModel(
        settings=SETTINGS,
        class_names=CLASSES,
        kind="logistic-regression",
        mean=rng.normal(size=n),
        scale=rng.uniform(0.5, 2.0, size=n),
        coef=rng.normal(size=(len(CLASSES), n)),
        intercept=rng.normal(size=len(CLASSES)),
    )


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return save_classic_bundle(
        tmp_path / "tiny", _model(), task="image-class", version="t-1", report={"a": 1}
    )


def _rewrite_manifest(bundle_dir: Path, **changes: object) -> None:
    data = json.loads((bundle_dir / MANIFEST).read_text())
    data.update(changes)
    (bundle_dir / MANIFEST).write_text(json.dumps(data))


def _rewrite_weights(bundle_dir: Path, tensors: dict[str, np.ndarray]) -> None:
    save_file(tensors, str(bundle_dir / WEIGHTS))
    data = json.loads((bundle_dir / MANIFEST).read_text())
    data["weights"]["sha256"] = hashlib.sha256((bundle_dir / WEIGHTS).read_bytes()).hexdigest()
    (bundle_dir / MANIFEST).write_text(json.dumps(data))


def test_round_trip_keeps_arrays_settings_and_predictions(bundle_dir: Path) -> None:
    loaded = load_classic_bundle(bundle_dir)
    original = _model()
    assert loaded.version == "t-1" and loaded.manifest.task == "image-class"
    assert loaded.model.settings == SETTINGS and loaded.model.class_names == CLASSES
    assert loaded.manifest.report == {"a": 1}
    features = np.random.default_rng(1).normal(size=(20, SETTINGS.length))
    np.testing.assert_array_equal(loaded.model.logits(features), original.logits(features))
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    assert manifest["layout"] == {"histogram": [0, 8], "hog": [8, 14]}


def test_group_contributions_and_intercept_add_up_to_the_logits() -> None:
    model = _model()
    x = np.random.default_rng(2).normal(size=SETTINGS.length)
    parts = model.group_contributions(x)
    np.testing.assert_allclose(sum(parts.values()) + model.intercept, model.logits(x)[0])
    why = explain_features(x, model)
    assert why.margin == pytest.approx(sum(why.margin_by_group.values()) + why.margin_intercept)
    assert why.margin >= 0 and why.predicted != why.runner_up


def test_a_pickle_in_place_of_the_weights_is_refused_without_unpickling(bundle_dir: Path) -> None:
    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (Path("/nonexistent/should-not-exist").mkdir, ())

    (bundle_dir / WEIGHTS).write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ClassicBundleError, match=r"weights\.safetensors: sha256 .* does not match"):
        load_classic_bundle(bundle_dir)

    data = json.loads((bundle_dir / MANIFEST).read_text())
    data["weights"]["sha256"] = hashlib.sha256((bundle_dir / WEIGHTS).read_bytes()).hexdigest()
    (bundle_dir / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ClassicBundleError, match=r"weights\.safetensors: not a safetensors file"):
        load_classic_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "steel-model-bundle/1"}, "field 'format'"),
        ({"weights": {"file": "../../etc/passwd", "sha256": "0" * 64}}, "weights.file"),
        ({"class_names": ["only-one"]}, "class_names"),
        ({"classifier": "random-forest"}, "classifier"),
        ({"features": {"hog_cell_px": -3}}, "features.hog_cell_px"),
        ({"layout": {"histogram": [0, 99]}}, "field 'layout'"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_a_hostile_manifest_is_refused_naming_the_field(
    bundle_dir: Path, changes: dict, message: str
) -> None:
    _rewrite_manifest(bundle_dir, **changes)
    with pytest.raises(ClassicBundleError, match="manifest.json") as info:
        load_classic_bundle(bundle_dir)
    assert message in str(info.value)


def test_weights_that_disagree_with_the_manifest_are_refused(bundle_dir: Path) -> None:
    model = _model()
    tensors = {
        "scaler.mean": model.mean,
        "scaler.scale": model.scale,
        "linear.coef": model.coef[:, :5],  # fewer columns than the layout says
        "linear.intercept": model.intercept,
    }
    _rewrite_weights(bundle_dir, tensors)
    with pytest.raises(
        ClassicBundleError, match=r"'linear.coef' is float64\[3, 5\], expected float\[3, 14\]"
    ):
        load_classic_bundle(bundle_dir)
    tensors["linear.coef"] = np.full_like(model.coef, np.nan)
    _rewrite_weights(bundle_dir, tensors)
    with pytest.raises(ClassicBundleError, match="NaN or infinite"):
        load_classic_bundle(bundle_dir)


def test_missing_and_malformed_manifests_are_clear_errors(tmp_path: Path, bundle_dir: Path) -> None:
    with pytest.raises(ClassicBundleError, match="not a folder"):
        load_classic_bundle(tmp_path / "nowhere")
    (bundle_dir / MANIFEST).write_text("{not json")
    with pytest.raises(ClassicBundleError, match="manifest.json: unreadable JSON"):
        load_classic_bundle(bundle_dir)


def test_predicting_from_a_bundle_needs_neither_torch_nor_scikit_learn() -> None:
    """The dashboard explains crops with this package, so it must stay free of torch, training and sklearn."""
    bundle = Path(__file__).resolve().parents[2] / "models" / "neu-classic"
    script = (
        "import sys, numpy as np\n"
        "from datasets.texture.bundle import load_classic_bundle\n"
        "from datasets.texture.explain import explain_crop\n"
        f"b = load_classic_bundle({str(bundle)!r})\n"
        "explain_crop(np.full((40, 50), 128, np.uint8), b.model)\n"
        "banned = {'torch', 'training', 'sklearn', 'inspection'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & banned))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("features", "field"),
    [
        ({"glcm_distances_px": [1, 10**9]}, "features.glcm_distances_px"),
        ({"glcm_distances_px": list(range(1, 200))}, "features.glcm_distances_px"),
        ({"lbp_points_radius": [[8, 1.0e9]]}, "features.lbp_points_radius"),
        ({"lbp_points_radius": [[8, 1.0]] * 100}, "features.lbp_points_radius"),
    ],
)
def test_feature_settings_that_would_exhaust_memory_are_refused_naming_the_field(
    bundle_dir: Path, features: dict, field: str
) -> None:
    """A radius or distance of 10^9 px would pad every crop to 2*10^9 px a side before a prediction; 200
    distances make a 256x256x200x16 co-occurrence array: a hostile bundle must not take the host down."""
    data = json.loads((bundle_dir / MANIFEST).read_text())
    data["features"].update(features)
    (bundle_dir / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ClassicBundleError, match="manifest.json") as info:
        load_classic_bundle(bundle_dir)
    assert field in str(info.value)


def test_a_manifest_nested_too_deep_for_the_json_parser_is_a_clear_error(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ClassicBundleError, match=r"manifest\.json: unreadable JSON"):
        load_classic_bundle(bundle_dir)


def test_weights_far_larger_than_the_manifest_layout_needs_are_refused_before_reading(
    bundle_dir: Path,
) -> None:
    """Every byte of the weights was hashed in memory; a weights file padded to 64 MiB (sparse here) for a
    3 x 14 model is refused by its size, naming the file and the manifest fields it disagrees with."""
    with open(bundle_dir / WEIGHTS, "r+b") as fh:
        fh.truncate(64 * 1024 * 1024)
    with pytest.raises(ClassicBundleError, match=r"weights\.safetensors: .*bytes") as info:
        load_classic_bundle(bundle_dir)
    assert "class_names" in str(info.value) and "features" in str(info.value)


def test_an_oversized_manifest_is_refused_before_it_is_parsed(bundle_dir: Path) -> None:
    data = json.loads((bundle_dir / MANIFEST).read_text())
    data["report"] = {"padding": "x" * (5 * 1024 * 1024)}
    (bundle_dir / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ClassicBundleError, match=r"manifest\.json: .*bytes"):
        load_classic_bundle(bundle_dir)
