"""Hostile and broken bundles (issue 11, item 9): every one is refused with one clear line naming the file
and the field, by the loader (a ``BundleError``) and by ``steel predict`` / ``steel eval`` (exit 1, one
``error:`` line, no traceback); none executes code and none is accepted."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from inspection.cli import app
from training.bundle import MANIFEST, WEIGHTS, BundleError, load_bundle, sha256_file

from .tiny_bundle import tiny_yolo_bundle

runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_yolo_bundle(tmp_path_factory.mktemp("pristine") / "bundle")


def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def write_manifest(bundle: Path, manifest: object) -> None:
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(bundle: Path) -> None:
        manifest = manifest_of(bundle)
        change(manifest)
        write_manifest(bundle, manifest)

    return apply


def replace_weights(write: Callable[[Path], None]) -> Callable[[Path], None]:
    """New weights content with the manifest's sha256 updated, so only the content itself can tell."""

    def apply(bundle: Path) -> None:
        write(bundle / WEIGHTS)
        edit(lambda m: m["weights"].update(sha256=sha256_file(bundle / WEIGHTS)))(bundle)

    return apply


def tensors_in_memory(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors copied out of safetensors' memory map (the file is overwritten next)."""
    return {name: t.clone() for name, t in load_file(str(path)).items()}


def pickled_state(path: Path) -> None:
    torch.save(tensors_in_memory(path), path)  # torch.save: a zip of pickles


def plain_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))


def garbage(path: Path) -> None:
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header" + bytes(64))


def nan_tensor(path: Path) -> None:
    state = tensors_in_memory(path)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(path))


def weights_dir(bundle: Path) -> None:
    (bundle / WEIGHTS).unlink()
    (bundle / WEIGHTS).mkdir()


def manifest_dir(bundle: Path) -> None:
    (bundle / MANIFEST).unlink()
    (bundle / MANIFEST).mkdir()


# (id, how to break the bundle, fragments the one error line must contain)
CASES = [
    ("garbage-safetensors", replace_weights(garbage), [WEIGHTS, "not a readable safetensors file"]),
    ("torch-save-pickle", replace_weights(pickled_state), [WEIGHTS, "pickle", "nothing is ever unpickled"]),
    ("plain-pickle", replace_weights(plain_pickle), [WEIGHTS, "pickle"]),
    ("nan-weights", replace_weights(nan_tensor), [WEIGHTS, "NaN or infinite"]),
    ("missing-input", edit(lambda m: m.pop("input")), [MANIFEST, "field 'input' is missing"]),
    ("missing-score", edit(lambda m: m["thresholds"].pop("score")), ["'thresholds.score' is missing"]),
    ("missing-weights-sha", edit(lambda m: m["weights"].pop("sha256")), ["'weights.sha256' is missing"]),
    ("class-names-string", edit(lambda m: m.update(class_names="abcdef")), ["field class_names", "list"]),
    ("duplicate-names", edit(lambda m: m.update(class_names=["crazing"] * 6)), ["class_names", "duplicate"]),
    ("empty-class-name", edit(lambda m: m["class_names"].__setitem__(0, "")), ["field class_names.0"]),
    ("input-size-1e9", edit(lambda m: m["input"].update(size=1e9)), ["field input.size", "4096"]),
    ("input-size-zero", edit(lambda m: m["input"].update(size=0)), ["field input.size", "32"]),
    ("input-size-other", edit(lambda m: m["input"].update(size=128)), ["input.size 128 differs"]),
    ("channels-zero", edit(lambda m: m["input"].update(channels=0)), ["field input.channels"]),
    ("negative-score", edit(lambda m: m["thresholds"].update(score=-0.5)), ["field thresholds.score"]),
    ("score-above-one", edit(lambda m: m["thresholds"].update(score=7)), ["field thresholds.score"]),
    ("nan-score", lambda b: (b / MANIFEST).write_text(
        (b / MANIFEST).read_text().replace('"score": 0.25', '"score": NaN')), ["NaN is not valid JSON"]),
    ("per-class-unknown", edit(lambda m: m["thresholds"].update(per_class={"rust": 0.3})), ["'rust'"]),
    ("per-class-above-one", edit(lambda m: m["thresholds"].update(per_class={"crazing": 2})),
     ["field thresholds.per_class.crazing"]),
    ("weights-path-escape", edit(lambda m: m["weights"].update(file="../../etc/passwd")), ["weights.file"]),
    ("zero-tensors", edit(lambda m: m["weights"].update(tensors=0)), ["field weights.tensors"]),
    ("unknown-family", edit(lambda m: m["architecture"].update(family="resnet")),
     ["architecture is invalid", "architecture.family"]),
    ("unknown-key", edit(lambda m: m.update(run_this="rm -rf /")), ["field run_this", "not permitted"]),
    ("empty-version", edit(lambda m: m.update(version="")), ["field version"]),
    ("weights-is-a-directory", weights_dir, [WEIGHTS, "is a directory"]),
    ("manifest-is-a-directory", manifest_dir, [MANIFEST, "is a directory"]),
    ("manifest-is-a-list", lambda b: write_manifest(b, [1, 2]), [MANIFEST, "one JSON object, not list"]),
    ("manifest-not-utf8", lambda b: (b / MANIFEST).write_bytes(b"\xff\xfe{"), [MANIFEST, "malformed JSON"]),
]  # fmt: skip


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def broken(request: pytest.FixtureRequest, pristine: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    _, breaker, fragments = request.param
    bundle = tmp_path / "bundle"
    shutil.copytree(pristine, bundle)
    breaker(bundle)
    return bundle, fragments


def test_the_loader_refuses_each_broken_bundle_naming_file_and_field(broken):
    bundle, fragments = broken
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    message = str(info.value)
    assert "\n" not in message and str(bundle) in message
    for fragment in fragments:
        assert fragment in message


def test_steel_predict_refuses_each_broken_bundle_with_one_line(broken, neu_root: Path):
    bundle, fragments = broken
    image = neu_root / "images" / "crazing_1.jpg"
    # catch_exceptions=False: any exception other than the clean exit would fail the test with its traceback
    args = ["predict", "--model", str(bundle), str(image), "--device", "cpu"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert all(fragment in lines[0] for fragment in fragments)


@pytest.mark.parametrize("case", ["torch-save-pickle", "class-names-string", "input-size-1e9"])
def test_steel_eval_refuses_broken_bundles_with_one_line(case, pristine, tmp_path, neu_root: Path):
    _, breaker, fragments = next(c for c in CASES if c[0] == case)
    bundle = tmp_path / "bundle"
    shutil.copytree(pristine, bundle)
    breaker(bundle)
    result = runner.invoke(app, ["eval", "--model", str(bundle), "--data", str(neu_root / "annotations"),
                                 "--device", "cpu", "--json"], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(fragment in lines[0] for fragment in fragments)


def test_an_intact_copy_still_loads(pristine: Path):
    assert load_bundle(pristine).class_names[0] == "crazing"
