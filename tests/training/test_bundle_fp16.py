"""fp16 bundle copies: half the bytes, the shipped model's detections on real NEU-DET images kept, the
manifest honest about what the file holds, and every refusal named (``steel bundle-fp16``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from datasets.settings import REPO_ROOT
from inspection.cli import app
from training.bundle import MANIFEST, WEIGHTS, BundleError, load_bundle, sha256_file
from training.bundle_fp16 import half_precision_copy

from .neu_samples import load_neu_batch

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
# one validation image of each of five classes
VAL_NAMES = ("crazing_102", "inclusion_107", "patches_1", "pitted_surface_101", "rolled-in_scale_102")


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model as a training run writes it: fp32 weights, no ``weights.dtype`` (it ships fp16)."""
    if not (SHIPPED / MANIFEST).is_file():
        pytest.skip("shipped bundle models/neu-yolo-n not present")
    out = tmp_path_factory.mktemp("fp32") / "neu-yolo-n"
    shutil.copytree(SHIPPED, out, ignore=shutil.ignore_patterns("*.onnx"))
    shipped = load_file(str(SHIPPED / WEIGHTS))
    state = {k: t.float() if t.is_floating_point() else t for k, t in shipped.items()}
    save_file(state, str(out / WEIGHTS))
    manifest = json.loads((out / MANIFEST).read_text())
    del manifest["weights"]["dtype"]
    manifest["weights"]["sha256"] = sha256_file(out / WEIGHTS)
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def fp16_copy(fp32_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return half_precision_copy(fp32_bundle, tmp_path_factory.mktemp("fp16") / "neu-yolo-n-fp16")


def test_the_copy_stores_half_the_bytes_and_says_so(fp32_bundle: Path, fp16_copy: Path):
    source = json.loads((fp32_bundle / MANIFEST).read_text())
    manifest = json.loads((fp16_copy / MANIFEST).read_text())
    assert (fp16_copy / WEIGHTS).stat().st_size < 0.52 * (fp32_bundle / WEIGHTS).stat().st_size
    assert manifest["weights"]["dtype"] == "float16"
    assert manifest["weights"]["sha256"] == sha256_file(fp16_copy / WEIGHTS)
    assert manifest["version"] == source["version"] + "-fp16"
    assert manifest["training"]["fp16_of"] == {
        "version": source["version"],
        "weights_sha256": source["weights"]["sha256"],
    }
    assert manifest["thresholds"] == source["thresholds"]  # the operating point travels with it
    assert (fp16_copy / "anomaly").is_dir() and not list(fp16_copy.glob("*.onnx"))
    stored = load_file(str(fp16_copy / WEIGHTS))
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}


def test_the_fp16_copy_finds_what_the_fp32_model_finds_on_real_images(fp32_bundle: Path, fp16_copy: Path):
    images = load_neu_batch(VAL_NAMES, size=224)[0]
    fp32, fp16 = load_bundle(fp32_bundle), load_bundle(fp16_copy)
    assert next(fp16.model.parameters()).dtype == torch.float32  # built in fp32, cast on load
    with torch.inference_mode():
        expected, got = fp32.model(images), fp16.model(images)
    kept = [(a["scores"] >= 0.25, b["scores"] >= 0.25) for a, b in zip(expected, got, strict=True)]
    assert sum(int(k.sum()) for k, _ in kept) >= len(VAL_NAMES)  # the shipped model finds these defects
    for (a, b), (ka, kb) in zip(zip(expected, got, strict=True), kept, strict=True):
        assert torch.equal(a["labels"][ka], b["labels"][kb])
        assert torch.allclose(a["boxes"][ka], b["boxes"][kb], atol=1.0)
        assert torch.allclose(a["scores"][ka], b["scores"][kb], atol=5e-3)


def test_weights_whose_type_differs_from_the_manifest_are_refused(fp16_copy: Path, tmp_path: Path):
    liar = tmp_path / "liar"
    liar.mkdir()
    (liar / WEIGHTS).write_bytes((fp16_copy / WEIGHTS).read_bytes())
    manifest = json.loads((fp16_copy / MANIFEST).read_text())
    manifest["weights"]["dtype"] = "float32"
    (liar / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"tensors are float16, manifest weights.dtype says float32"):
        load_bundle(liar)


def test_an_fp16_bundle_or_an_existing_folder_is_refused(fp32_bundle: Path, fp16_copy: Path, tmp_path: Path):
    with pytest.raises(BundleError, match="already float16"):
        half_precision_copy(fp16_copy, tmp_path / "again")
    with pytest.raises(BundleError, match="already float16"):
        half_precision_copy(SHIPPED, tmp_path / "again")  # the shipped default is fp16 already
    with pytest.raises(BundleError, match="already exists"):
        half_precision_copy(fp32_bundle, fp16_copy)
    assert not (tmp_path / "again").exists()


def test_an_ensemble_has_no_weights_to_halve(tmp_path: Path):
    with pytest.raises(BundleError, match="only a model bundle has weights"):
        half_precision_copy(REPO_ROOT / "models" / "neu-yolo-n-ens3", tmp_path / "out")


def test_a_weight_beyond_fp16_range_is_refused_and_nothing_is_written(fp32_bundle: Path, tmp_path: Path):
    big = tmp_path / "big"
    big.mkdir()
    state = load_file(str(fp32_bundle / WEIGHTS))
    name = next(k for k, t in state.items() if t.is_floating_point())
    state[name] = state[name].clone().fill_(1e6)
    save_file(state, str(big / WEIGHTS))
    manifest = json.loads((fp32_bundle / MANIFEST).read_text())
    manifest["weights"]["sha256"] = sha256_file(big / WEIGHTS)
    (big / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"{name} holds values beyond fp16's range"):
        half_precision_copy(big, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]


def test_the_command_writes_the_copy_and_names_a_bad_source(fp32_bundle: Path, tmp_path: Path):
    runner = CliRunner()
    done = runner.invoke(app, ["bundle-fp16", "--model", str(fp32_bundle), "--out", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    assert f"wrote {tmp_path / 'b'}" in done.stdout and (tmp_path / "b" / MANIFEST).is_file()
    bad = runner.invoke(app, ["bundle-fp16", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "c")])
    assert bad.exit_code == 1 and "no model bundle manifest" in bad.stderr
    assert "Traceback" not in bad.output
