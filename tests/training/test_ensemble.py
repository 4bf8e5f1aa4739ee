"""Ensemble bundles: members fused by weighted box fusion (ensemble-boxes), optionally with each image
mirrored; an ensemble folder is a bundle that the loader, ``steel predict``, ``steel eval`` and the
daemon's detector accept, and a broken one is refused naming the member."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from datasets.model import NEU_DET_CLASSES
from inspection.cli import app
from inspection.detector import TileDetector
from training.bundle import BundleError, load_bundle
from training.ensemble import EnsembleDetector, fuse_views, save_ensemble
from training.inference import Predictor, read_image
from training.manifest import EnsembleSpec, FusionSpec, MemberSpec, TtaSpec

from .test_line_figures import voc_truth
from .tiny_bundle import edit_manifest, tiny_faster_rcnn_bundle, tiny_yolo_bundle

runner = CliRunner()
SHIPPED = Path(__file__).resolve().parents[2] / "models" / "neu-yolo-n"


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real (tiny) YOLO bundles of different seeds and input sizes under one folder."""
    root = tmp_path_factory.mktemp("models")
    tiny_yolo_bundle(root / "a", seed=0, size=64)
    tiny_yolo_bundle(root / "b", seed=1, size=96)
    return root


def ensemble(root: Path, name: str = "ens", *, hflip: bool = True, paths=("../a", "../b")) -> Path:
    weights = (2.0, 1.0)[: len(paths)]
    spec = EnsembleSpec(
        members=[MemberSpec(path=p, weight=w) for p, w in zip(paths, weights, strict=True)],
        tta=TtaSpec(hflip=hflip),
    )
    return save_ensemble(root / name, version=f"{name}-1", spec=spec)


def one_view(boxes: list[list[float]], scores: list[float], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}  # fmt: skip


def test_fusion_averages_a_box_seen_in_both_views_and_halves_one_seen_once(neu_root: Path):
    x1, y1, x2, y2 = voc_truth(neu_root, "inclusion_2").boxes[0].tolist()  # a real 200 x 200 image box
    mirrored = [200 - x2, y1, 200 - x1, y2]
    lonely = [150.0, 10.0, 190.0, 40.0]
    views = [
        (one_view([[x1, y1, x2, y2], lonely], [0.8, 0.8], [1, 5]), 200, False),
        (one_view([mirrored], [0.6], [1]), 200, True),
    ]
    boxes, scores, labels = fuse_views(views, weights=[1.0, 1.0], fusion=FusionSpec())
    assert labels.tolist() == [1, 5]
    np.testing.assert_allclose(scores, [0.7, 0.4], atol=1e-6)  # (0.8 + 0.6) / 2; 0.8 * 1 of 2 views
    np.testing.assert_allclose(boxes[0] * 200, [x1, y1, x2, y2], atol=1e-3)  # the mirror is undone
    np.testing.assert_allclose(boxes[1] * 200, lonely, atol=1e-3)


def test_hflip_tta_is_mirror_equivariant_on_a_real_image(neu_root: Path, tmp_path: Path):
    """With the mirrored view fused in, scoring the mirrored image gives the mirrored result."""
    if not SHIPPED.is_dir():
        pytest.skip(f"shipped bundle not found at {SHIPPED}")
    shutil.copytree(SHIPPED, tmp_path / "yolo")
    predictor = Predictor(str(ensemble(tmp_path, paths=("../yolo",))), device="cpu", score_threshold=0.05)
    image = read_image(str(neu_root / "images" / "scratches_10.jpg"))
    straight, flipped = predictor([image, np.ascontiguousarray(image[:, ::-1])])
    assert len(straight) >= 1 and len(straight) == len(flipped)
    width = image.shape[1]
    back = flipped.xyxy[:, [2, 1, 0, 3]] * [-1, 1, -1, 1] + [width, 0, width, 0]
    order_a, order_b = np.lexsort(straight.xyxy.T), np.lexsort(back.T)
    np.testing.assert_allclose(straight.xyxy[order_a], back[order_b], atol=0.5)
    np.testing.assert_allclose(straight.scores[order_a], flipped.scores[order_b], atol=1e-3)


def test_ensemble_bundle_loads_as_one_model_with_the_contract(members: Path, neu_root: Path):
    bundle = load_bundle(ensemble(members))
    assert isinstance(bundle.model, EnsembleDetector) and bundle.model_config is None
    assert bundle.class_names == list(NEU_DET_CLASSES) and bundle.image_size == 64
    images = torch.rand(2, 1, 64, 64)
    outputs = bundle.model(images)
    assert len(outputs) == 2 and set(outputs[0]) == {"boxes", "scores", "labels"}
    assert ((outputs[0]["boxes"] >= 0) & (outputs[0]["boxes"] <= 64)).all()
    bundle.model.train()
    with pytest.raises(RuntimeError, match="train its member bundles"):
        bundle.model(images, [])


def test_a_faster_rcnn_member_fuses_with_a_yolo_member_in_image_pixels(members: Path, neu_root: Path):
    tiny_faster_rcnn_bundle(members / "frcnn", size=96)
    ens = load_bundle(ensemble(members, "mixed", paths=("../a", "../frcnn")))
    assert [type(m).__name__ for m in ens.model.members] == ["YOLO", "FasterRCNNDetector"]
    assert ens.model.member_sizes == [64, 96]
    predictor = Predictor(ens, device="cpu", score_threshold=0.0)
    image = read_image(str(neu_root / "images" / "crazing_1.jpg"))  # 200 x 200
    (found,) = predictor([image])
    assert len(found) > 0  # an untrained Faster R-CNN still proposes boxes at a zero threshold
    assert (found.xyxy >= 0).all() and (found.xyxy <= 200).all()
    assert set(found.class_ids.tolist()) <= set(range(len(NEU_DET_CLASSES)))


def test_steel_predict_and_eval_accept_an_ensemble_folder(members: Path, neu_root: Path):
    ens = ensemble(members)
    image = neu_root / "images" / "crazing_1.jpg"
    result = runner.invoke(app, ["predict", "--model", str(ens), str(image), "--conf", "0.001", "--json",
                                 "--device", "cpu"], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == "ens-1" and out["images"][0]["detections"]
    folder = members / "voc"
    folder.mkdir(exist_ok=True)
    for name in ("crazing_1", "inclusion_2"):
        shutil.copy(neu_root / "annotations" / f"{name}.xml", folder)
    args = ["eval", "--model", ens, "--data", folder, "--images", neu_root / "images", "--json"]
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["images"] == 2 and "reject_recall" in metrics


def test_the_daemon_detector_runs_an_ensemble(members: Path, neu_root: Path):
    detector = TileDetector(ensemble(members, "daemon-ens"), device="cpu", batch_size=2, threads=1)
    tile = read_image(str(neu_root / "images" / "patches_1.jpg"))
    detections, version = detector.detect(np.stack([tile, tile[:, ::-1]]))
    assert version == "daemon-ens-1" and len(detections) == 2
    assert set(detector.operating_point()) == set(NEU_DET_CLASSES)


def test_broken_members_are_refused_naming_the_member(members: Path, neu_root: Path):
    missing = ensemble(members, "missing", paths=("../a", "../nowhere"))
    with pytest.raises(BundleError, match=r"ensemble.members.1.path: .*nowhere is not another bundle"):
        load_bundle(missing)
    nested = ensemble(members, "nested", paths=("../a", "../missing"))
    with pytest.raises(BundleError, match="ensemble.members.1.path: member bundle refused"):
        load_bundle(nested)
    inner = ensemble(members, "inner", hflip=False, paths=("../a", "../b"))
    outer = ensemble(members, "outer", paths=("../a", "../inner"))
    with pytest.raises(BundleError, match="members must be single models"):
        load_bundle(outer)
    assert load_bundle(inner).model.hflip is False
    other = ensemble(members, "other", paths=("../a",))
    edit_manifest(other, class_names=["a", "b", "c", "d", "e", "f"])
    image = neu_root / "images" / "crazing_1.jpg"
    result = runner.invoke(app, ["predict", "--model", str(other), str(image)], catch_exceptions=False)
    assert result.exit_code == 1 and "ensemble.members.0.path: classes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
