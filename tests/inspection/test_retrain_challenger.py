"""Training the challenger under torchrun: a child that fails is one error naming the run, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from datasets.background import read_gray_image
from datasets.settings import REPO_ROOT, load_config
from inspection.retrain import challenger
from inspection.retrain.anomaly import carry_champion_anomaly
from tests.inspection.retrain_fixtures import make_blind_champion
from training.anomaly.store import load_anomaly
from training.config import TrainConfig


def test_a_failing_torchrun_child_is_a_runtime_error_naming_its_exit_status_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher is replaced by an interpreter that exits 3, as torchrun does when a rank fails (a CUDA
    error, a bad data path): ``steel retrain`` catches RuntimeError, not CalledProcessError."""
    recipe = REPO_ROOT / "configs" / "train" / "yolo_n.yaml"
    train_cfg = load_config(recipe, TrainConfig, [f"train.out_dir={tmp_path / 'train'}"])
    monkeypatch.setattr(
        challenger, "torchrun_command", lambda nproc: [sys.executable, "-c", "import sys; sys.exit(3)"]
    )
    with pytest.raises(RuntimeError, match="exit status 3") as info:
        challenger.train_challenger(train_cfg, nproc=2, log=lambda line: None)
    assert str(tmp_path / "train_config.json") in str(info.value)


SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"


def test_a_published_challenger_carries_the_champions_anomaly_model_which_scores_as_before(
    tmp_path: Path, neu_root: Path
) -> None:
    """Retrained bundles used to lose ``anomaly/``: the daemon on a promoted challenger scored nothing."""
    if not (SHIPPED / "anomaly" / "anomaly.json").is_file():
        pytest.skip("shipped bundle has no anomaly model")
    trained = make_blind_champion(tmp_path / "train" / "bundle", "trained")  # the challenger as trained
    lines: list[str] = []
    facts = carry_champion_anomaly(SHIPPED, trained, lines.append)
    registry = tmp_path / "registry" / "r1"
    published = challenger.publish_bundle(trained, registry, version="r1", metrics={}, retrain={})
    assert published["version"] == "r1"
    original, carried = load_anomaly(SHIPPED), load_anomaly(tmp_path / "registry" / "r1")
    assert carried.path == tmp_path / "registry" / "r1" / "anomaly"
    assert facts == {
        "carried": True,
        "model_version": original.manifest["version"],
        "threshold": original.threshold,
        "from": str(SHIPPED),
    }
    assert carried.threshold == original.threshold and "carried from the champion" in lines[-1]
    image = read_gray_image(neu_root / "images" / "scratches_10.jpg")
    (before,), (after,) = original.scorer.maps([image]), carried.scorer.maps([image])
    assert (
        after.shape == (200, 200) and (after == before).all()
    )  # its own backbone copy: new detector weights change nothing


def test_a_champion_without_an_anomaly_model_gives_a_challenger_without_one_and_a_warning(tmp_path: Path):
    champion = make_blind_champion(tmp_path / "champion", "champ")
    trained = make_blind_champion(tmp_path / "train" / "bundle", "trained")
    (trained / "anomaly").mkdir()  # a stale copy from an earlier, resumed attempt
    lines: list[str] = []
    facts = carry_champion_anomaly(champion, trained, lines.append)
    assert facts["carried"] is False and "has no anomaly/ folder" in facts["reason"]
    assert lines[-1].startswith("WARNING") and not (trained / "anomaly").exists()
    challenger.publish_bundle(trained, tmp_path / "registry" / "r1", version="r1", metrics={}, retrain={})
    assert not (tmp_path / "registry" / "r1" / "anomaly").exists()
