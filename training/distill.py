"""Dense distillation of a YOLO student from trained YOLO teachers (``train.distill``).

The ensemble is the most accurate configuration but six to thirty forward passes per image; the line
runs one YOLO-n. Teachers that share the student's anchor grid (same strides, input size and
distance bins) give, at every anchor, class probabilities and distance distributions: averaged over the
teachers, they are soft targets the student is pulled towards beside its labels (a KL term per class
and per box side, weighted by the teacher's confidence for the box). Written here because torchvision
and the libraries we use have no detector distillation; the losses are a few lines over ``HeadOutput``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.bundle import BundleError, load_bundle
from training.config import DistillConfig
from training.models.yolo.head import HeadOutput
from training.models.yolo.model import YOLO


@dataclass(frozen=True)
class SoftTargets:
    """The teachers' mean class probabilities (B, A, C) and distance distributions (B, A, 4, R)."""

    probs: torch.Tensor
    dists: torch.Tensor

    def cleared(self, clean: torch.Tensor) -> SoftTargets:
        """These targets with zero class probability on the images of the ``clean`` (B,) mask: there the
        student learns no defect anywhere, and no box shape either (the side term is weighted by it)."""
        keep = (~clean).to(self.probs.dtype).view(-1, 1, 1)
        return SoftTargets(self.probs * keep, self.dists)


class DenseTeacher:
    """Frozen YOLO teachers behind one call. Held by the student as a plain attribute, so it is in
    neither its ``state_dict`` nor its parameters (optimizer, EMA, DDP see only the student)."""

    def __init__(self, models: list[YOLO], cfg: DistillConfig):
        self.models = models
        self.cfg = cfg
        for model in models:
            model.eval().requires_grad_(False)

    def __deepcopy__(self, memo: dict[int, object]) -> DenseTeacher:
        return self  # the EMA copy of the student shares the frozen teachers

    @torch.no_grad()
    def soft_targets(self, images: torch.Tensor) -> SoftTargets:
        probs, dists = [], []
        for model in self.models:
            out = model.head(model.backbone(images))
            b, a, _ = out.pred_dist.shape
            probs.append(out.pred_logits.float().sigmoid())
            dists.append(out.pred_dist.float().view(b, a, 4, -1).softmax(dim=-1))
        return SoftTargets(torch.stack(probs).mean(0), torch.stack(dists).mean(0))

    def losses(
        self, images: torch.Tensor, student: HeadOutput, boxed: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{kd_cls, kd_dfl}`` for the student's head output on ``images``, already weighted. ``boxed`` (B,)
        says which images hold a box; with ``clean_images: labels`` the others teach "no defect" only."""
        soft = self.soft_targets(images)
        if self.cfg.clean_images == "labels":
            soft = soft.cleared(~boxed)
        return distillation_losses(student, soft, self.cfg)


def _bernoulli_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target || sigmoid(logits)) elementwise, exact at 0 and 1 (``xlogy``): zero where they agree."""
    own: torch.Tensor = torch.special.xlogy(target, target) + torch.special.xlogy(1 - target, 1 - target)
    cross = target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)
    return own - cross


def distillation_losses(
    student: HeadOutput, soft: SoftTargets, cfg: DistillConfig
) -> dict[str, torch.Tensor]:
    """Class KL summed over anchors and classes per unit of teacher probability mass; side KL per anchor,
    weighted by the teacher's top class probability (background anchors carry no box to learn)."""
    logits = student.pred_logits.float()
    kd_cls = _bernoulli_kl(logits, soft.probs).sum() / soft.probs.sum().clamp(min=1.0)
    b, a, _ = student.pred_dist.shape
    log_q = student.pred_dist.float().view(b, a, 4, -1).log_softmax(dim=-1)
    p = soft.dists
    kl_sides = (p * (p.clamp_min(1e-9).log() - log_q)).sum(-1).mean(-1)  # (B, A)
    weight = soft.probs.max(dim=-1).values
    kd_dfl = (kl_sides * weight).sum() / weight.sum().clamp(min=1.0)
    return {"kd_cls": kd_cls * cfg.cls_gain, "kd_dfl": kd_dfl * cfg.dfl_gain}


def load_teacher(
    cfg: DistillConfig, student: YOLO, class_names: list[str], device: torch.device
) -> DenseTeacher:
    """Load ``cfg.teachers`` and check each shares the student's anchor grid and classes."""
    models = []
    for i, path in enumerate(cfg.teachers):
        where = f"train.distill.teachers[{i}] ({path})"
        try:
            bundle = load_bundle(path, device=device)
        except (BundleError, OSError) as exc:
            raise ValueError(f"{where}: cannot load the teacher: {exc}") from None
        model = bundle.model
        if not isinstance(model, YOLO):
            raise ValueError(f"{where}: a teacher must be a single YOLO bundle, not {type(model).__name__}")
        mismatch = _grid_mismatch(model, student)
        if bundle.class_names != class_names:
            mismatch = f"its classes {bundle.class_names} differ from the student's {class_names}"
        if mismatch:
            raise ValueError(f"{where}: {mismatch}")
        models.append(copy.deepcopy(model).to(device))
    return DenseTeacher(models, cfg)


def _grid_mismatch(teacher: YOLO, student: YOLO) -> str | None:
    checks = {
        "strides": (teacher.head.strides, student.head.strides),
        "reg_max": (teacher.cfg.reg_max, student.cfg.reg_max),
        "image_size": (teacher.image_size, student.image_size),
        "in_channels": (_in_channels(teacher), _in_channels(student)),
    }
    for name, (t, s) in checks.items():
        if t != s:
            return f"its {name} {t} differ from the student's {s}: the anchor grids must match"
    return None


def _in_channels(model: YOLO) -> int:
    first = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    return int(first.in_channels)
