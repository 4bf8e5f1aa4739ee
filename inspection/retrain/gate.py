"""Champion against challenger: both scored on the fixed set and the new data's validation part, the
challenger's per-class thresholds calibrated first (on held-out base images, never the fixed set), each
model's rejects counted at its own operating point, and the promotion rule applied (:mod:`.decide`).

Loads models and runs inference; :func:`judge` is what the job calls and what tests call with real
bundles and images, without training anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from datasets.model import ImageRecord
from inspection.retrain.config import RetrainConfig
from inspection.retrain.decide import Decision, SetScores, decide
from inspection.retrain.evaluate import brief, score_bundle
from inspection.retrain.operating import ClassRejects, bundle_thresholds, calibrate_thresholds, rejects_at
from training.bundle import Bundle


@dataclass(frozen=True)
class Judgement:
    """Everything the gate measured, and its decision."""

    decision: Decision
    metrics: dict[str, dict[str, Any]]  # "fixed"/"new" -> role -> brief evaluation
    operating_points: dict[str, dict[str, Any]]  # role -> thresholds, calibration facts, rejects per class
    challenger_thresholds: dict[str, float]


def _describe(
    thresholds: dict[str, float],
    points: dict[str, ClassRejects],
    how: str,
    calibration_set: dict[str, ClassRejects] | None = None,
) -> dict[str, Any]:
    described: dict[str, Any] = {
        "thresholds": thresholds,
        "chosen_by": how,
        "fixed_set": {name: p.to_dict() for name, p in points.items()},
    }
    if calibration_set is not None:
        described["calibration_set"] = {name: p.to_dict() for name, p in calibration_set.items()}
    return described


def judge(
    champion: Bundle | None,
    challenger: Bundle,
    *,
    fixed: Sequence[ImageRecord],
    calibration: Sequence[ImageRecord],
    new_val: Sequence[ImageRecord],
    cfg: RetrainConfig,
) -> Judgement:
    """Calibrate the challenger, score both models, decide."""
    if champion is not None and champion.class_names != challenger.class_names:
        raise ValueError(f"champion classes {champion.class_names} differ from {challenger.class_names}")
    target = cfg.calibration.target_recall
    on_calibration = score_bundle(challenger, calibration, device=cfg.device)
    thresholds = calibrate_thresholds(
        on_calibration.matched, target_recall=target, fallback=bundle_thresholds(challenger)
    )
    calibrated = rejects_at(on_calibration.matched, thresholds)
    metrics: dict[str, dict[str, Any]] = {"fixed": {}, "new": {}}
    scores: dict[str, dict[str, SetScores]] = {"fixed": {}, "new": {}}
    points: dict[str, dict[str, ClassRejects]] = {}
    described: dict[str, dict[str, Any]] = {}
    for role, model in (("champion", champion), ("challenger", challenger)):
        if model is None:
            continue
        on_fixed = score_bundle(model, fixed, device=cfg.device)
        role_thresholds = thresholds if role == "challenger" else bundle_thresholds(model)
        points[role] = rejects_at(on_fixed.matched, role_thresholds)
        metrics["fixed"][role] = brief(on_fixed.summary)
        scores["fixed"][role] = SetScores.from_eval(on_fixed.summary)
        if new_val:
            on_new = score_bundle(model, new_val, device=cfg.device)
            metrics["new"][role] = brief(on_new.summary)
            scores["new"][role] = SetScores.from_eval(on_new.summary)
        how = (
            f"calibrated for recall {target:.2f} per class on {len(calibration)} held-out base images"
            if role == "challenger"
            else "as it runs on the line (its manifest)"
        )
        on_calibration_set = calibrated if role == "challenger" else None
        described[role] = _describe(role_thresholds, points[role], how, on_calibration_set)
    decision = decide(
        champion_fixed=scores["fixed"].get("champion"),
        challenger_fixed=scores["fixed"]["challenger"],
        champion_new=scores["new"].get("champion"),
        challenger_new=scores["new"].get("challenger"),
        gates=cfg.gates,
        champion_points=points.get("champion"),
        challenger_points=points["challenger"],
    )
    return Judgement(decision, metrics, described, thresholds)
