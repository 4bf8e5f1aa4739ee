"""Dense distillation: the soft terms vanish for a student equal to its teacher, pull a fresh student
towards the teacher on real NEU images, stay out of the student's weights, refuse teachers on another
grid with the key path named, and run inside ``fit``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from datasets.model import NEU_DET_CLASSES
from datasets.settings import REPO_ROOT, ConfigError, load_config
from training.bundle import load_bundle
from training.config import DistillConfig, TrainConfig
from training.distill import DenseTeacher, distillation_losses, load_teacher
from training.models.yolo.model import YOLO, YoloConfig, as_yolo, build_yolo
from training.trainer import fit

from .neu_samples import load_neu_batch
from .test_trainer import tiny
from .tiny_bundle import tiny_yolo_bundle

SHIPPED = REPO_ROOT / "models" / "neu-yolo-n"
NAMES = ["crazing_1", "inclusion_40", "scratches_71", "rolled-in_scale_18"]
CLASSES = list(NEU_DET_CLASSES)


pytestmark = pytest.mark.usefixtures("one_thread")


def teacher_for(student: YOLO, path: Path | str = SHIPPED, classes: list[str] = CLASSES) -> DenseTeacher:
    return load_teacher(DistillConfig(teachers=[str(path)]), student, classes, torch.device("cpu"))


def fresh_student(size: int = 224) -> YOLO:
    torch.manual_seed(0)
    return build_yolo(YoloConfig(), num_classes=len(CLASSES), in_channels=1, image_size=size)


def test_a_student_equal_to_its_teacher_has_no_distillation_loss():
    images, _ = load_neu_batch(NAMES, size=224)
    student = as_yolo(copy.deepcopy(load_bundle(SHIPPED).model)).eval()
    teacher = teacher_for(student)
    with torch.no_grad():
        out = student.head(student.backbone(images))
        losses = teacher.losses(images, out, torch.ones(4, dtype=torch.bool))
    assert set(losses) == {"kd_cls", "kd_dfl"}
    assert losses["kd_cls"].item() == pytest.approx(0.0, abs=1e-4)
    assert losses["kd_dfl"].item() == pytest.approx(0.0, abs=1e-4)


def test_on_clean_images_the_labels_can_overrule_the_teacher():
    """``clean_images: labels``: on an image with no box the student is pulled towards "no defect", not
    towards the teacher's firing on texture; images with boxes keep the teacher's targets."""
    images, _ = load_neu_batch(NAMES, size=224)
    student = as_yolo(copy.deepcopy(load_bundle(SHIPPED).model)).eval()
    out = student.head(student.backbone(images))
    boxed = torch.tensor([True, False, True, False])
    follows = teacher_for(student)
    overrules = load_teacher(
        DistillConfig(teachers=[str(SHIPPED)], clean_images="labels"), student, CLASSES, torch.device("cpu")
    )
    with torch.no_grad():
        same = follows.losses(images, out, boxed)
        cleared = overrules.losses(images, out, boxed)
        all_boxed = overrules.losses(images, out, torch.ones(4, dtype=torch.bool))
    assert same["kd_cls"].item() == pytest.approx(0.0, abs=1e-4)  # the student is its teacher
    assert cleared["kd_cls"].item() > 0.01  # the teacher's own probabilities on two images are now wrong
    assert all_boxed["kd_cls"].item() == pytest.approx(0.0, abs=1e-4)  # no clean image: nothing changes
    soft = follows.soft_targets(images).cleared(~boxed)
    assert soft.probs[1].abs().sum() == 0 and soft.probs[3].abs().sum() == 0
    assert torch.equal(soft.probs[0], follows.soft_targets(images).probs[0])


def test_distillation_pulls_a_fresh_student_towards_the_teacher():
    images, _ = load_neu_batch(NAMES, size=224)
    student = fresh_student().train()
    teacher = teacher_for(student)
    soft = teacher.soft_targets(images)
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    totals = []
    for _ in range(10):
        losses = distillation_losses(student.head(student.backbone(images)), soft, teacher.cfg)
        total = losses["kd_cls"] + losses["kd_dfl"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.7 * totals[0], totals
    assert all(p.grad is None or p.grad.abs().sum() == 0 for m in teacher.models for p in m.parameters())


def test_the_teacher_stays_out_of_the_students_weights_parameters_and_copies():
    student = fresh_student()
    keys, params = set(student.state_dict()), len(list(student.parameters()))
    student.teacher = load_teacher(
        DistillConfig(teachers=[str(SHIPPED)]), student, CLASSES, torch.device("cpu")
    )
    assert set(student.state_dict()) == keys and len(list(student.parameters())) == params
    assert copy.deepcopy(student).teacher is student.teacher  # the EMA copy shares the frozen teacher
    student.train()
    assert isinstance(student.teacher, DenseTeacher)
    assert not any(m.training for m in student.teacher.models)


def test_teachers_that_cannot_teach_are_refused_naming_the_key(tmp_path: Path):
    student = fresh_student()
    small = tiny_yolo_bundle(tmp_path / "tiny64", size=64)
    cases = [
        (str(small), r"train\.distill\.teachers\[0\] .*image_size 64 differ from the student's 224"),
        (str(tmp_path / "missing"), r"train\.distill\.teachers\[0\] .*cannot load the teacher"),
        (str(REPO_ROOT / "models" / "neu-yolo-n-flip"), r"a single YOLO bundle, not"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            teacher_for(student, path)
    with pytest.raises(ValueError, match="its classes"):
        teacher_for(student, classes=CLASSES[::-1])


def test_distillation_for_faster_rcnn_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="train.distill.teachers"):
        load_config(
            REPO_ROOT / "configs" / "train" / "faster_rcnn_mbv3.yaml",
            TrainConfig,
            ["train.distill.teachers=[models/neu-yolo-n]"],
        )


def test_fit_with_a_teacher_logs_the_soft_terms_and_ships_only_the_student(neu_root: Path, tmp_path: Path):
    teacher = tiny_yolo_bundle(tmp_path / "teacher", size=64)
    result = fit(tiny(tmp_path / "run", f"train.distill.teachers=[{teacher}]"))
    history = json.loads((result.out_dir / "metrics.json").read_text())
    assert history[0]["train_kd_cls"] > 0 and history[0]["train_kd_dfl"] >= 0
    bundle = load_bundle(result.bundle_dir)
    assert set(bundle.model.state_dict()) == set(fresh_student(64).state_dict())
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    assert manifest["training"]["config"]["train"]["distill"]["teachers"] == [str(teacher)]
