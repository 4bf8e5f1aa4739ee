"""Masked-image pretraining of the YOLO backbone on real NEU-DET images: the masks, that it learns, that
its backbone file starts a detector, and that a resumed run ends exactly where a straight one does."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from datasets.model import NEU_DET_CLASSES
from datasets.settings import REPO_ROOT, data_root
from tests.training.neu_samples import load_neu_batch
from training.cli import app
from training.config import DataConfig, ModelConfig
from training.models.yolo.model import YoloConfig, build_yolo
from training.pretrain.masked import MaskedImageModel, mask_patches, masked_l1
from training.pretrain.run import BACKBONE_FILE, PretrainConfig, pretrain
from training.weights import load_local_weights

SIZE = 64
STEMS = ("patches_1", "scratches_10", "crazing_1", "inclusion_10")
SPLIT = str(REPO_ROOT / "configs" / "splits" / "neu-det-dev.json")


pytestmark = pytest.mark.usefixtures("one_thread")


def small_config(out_dir, *, epochs: int) -> PretrainConfig:
    data = DataConfig(path=str(data_root() / "annotations"), split_file=SPLIT, subset=8)
    model = ModelConfig(image_size=SIZE, yolo=YoloConfig(size="n"))
    return PretrainConfig(model=model, data=data, epochs=epochs, batch_size=4, out_dir=str(out_dir), seed=1)


def test_masking_hides_about_the_asked_share_in_whole_patches_and_leaves_the_rest():
    images, _ = load_neu_batch(
        ("patches_1", "scratches_10", "crazing_1", "inclusion_10"), size=96, channels=1
    )
    masked, mask = mask_patches(images, patch=16, ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (4, 1, 96, 96)
    assert 0.3 < float(mask.mean()) < 0.7
    cells = mask[:, :, ::16, ::16]  # one value per 16 x 16 patch: constant inside it
    assert torch.equal(mask, cells.repeat_interleave(16, 2).repeat_interleave(16, 3))
    visible = mask == 0
    assert torch.equal(masked[visible], images[visible])
    fill = images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images)
    assert torch.allclose(masked[~visible], fill[~visible])


def test_a_few_steps_on_real_images_lower_the_masked_reconstruction_error():
    torch.manual_seed(0)
    images, _ = load_neu_batch(
        ("patches_1", "scratches_10", "crazing_1", "inclusion_10"), size=SIZE, channels=1
    )
    model = MaskedImageModel(size="n", in_channels=1).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(25):
        masked, mask = mask_patches(images, patch=8, ratio=0.5, generator=torch.Generator().manual_seed(0))
        loss = masked_l1(model(masked), images, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss))
    assert sum(history[-3:]) / 3 < 0.6 * history[0], history


def test_the_pretrained_backbone_starts_a_detector_and_only_the_head_starts_fresh(tmp_path):
    result = pretrain(small_config(tmp_path, epochs=1))
    weights = tmp_path / BACKBONE_FILE
    assert len(result.losses) == 1 and (tmp_path / "pretrain.json").is_file()
    detector = build_yolo(YoloConfig(), num_classes=len(NEU_DET_CLASSES), in_channels=1, image_size=SIZE)
    not_loaded = load_local_weights(detector, weights)
    assert not_loaded and all(name.startswith("head.") for name in not_loaded)
    saved = load_file(str(weights))
    state = detector.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in saved.items())


def test_a_resumed_run_ends_exactly_where_a_straight_run_ends(tmp_path):
    straight = pretrain(small_config(tmp_path / "straight", epochs=2))
    pretrain(small_config(tmp_path / "resumed", epochs=1))
    resumed = pretrain(small_config(tmp_path / "resumed", epochs=2), resume=True)
    assert resumed.losses == straight.losses
    a = load_file(str(tmp_path / "straight" / BACKBONE_FILE))
    b = load_file(str(tmp_path / "resumed" / BACKBONE_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_a_checkpoint_and_a_bad_key_are_named_by_the_command(tmp_path):
    config = REPO_ROOT / "configs" / "pretrain" / "yolo_n.yaml"
    runner = CliRunner()
    missing = runner.invoke(app, ["pretrain", str(config), "--resume", "--set", f"out_dir={tmp_path}"])
    assert missing.exit_code == 1 and f"no checkpoint at {tmp_path / 'last.pt'}" in missing.output
    bad = runner.invoke(app, ["pretrain", str(config), "--set", "mask_ratio=1.5"])
    assert bad.exit_code == 2 and "mask_ratio" in bad.output
