"""The promotion rule: a pure function of two models' scores and the configured tolerances.

A challenger replaces the champion only when all of these hold:

1. **Fixed set, overall**: its mAP@0.5 on the fixed set (never trained on) is at most ``max_map50_drop``
   below the champion's.
2. **Fixed set, per class**: no class with ground truth there loses more than ``max_class_ap50_drop`` AP50.
3. **Operating points, per class** (fixed set): at each model's own per-class thresholds (the champion's as
   it runs on the line, the challenger's calibrated for a target recall before it is judged), the reject
   recall of no class falls by more than ``max_reject_recall_drop`` and the false rejects (detections over
   no defect) of no class rise by more than ``max_false_reject_rise`` per image.
4. **New data** (when ``require_better_on_new``): on the validation part of the newly reviewed data it is
   better: a mAP@0.5 above the champion's by more than ``min_new_gain`` or, when that part holds background
   images only (operators rejected false alarms), fewer false alarms at each model's operating threshold.
   When that part rests on fewer than ``min_new_boxes_per_class`` boxes of a class it holds (or that many
   background images), the comparison is reported as **not significant** and does not decide.

Scores are read from evaluation summaries (``EvalResult.to_dict()``, the ``steel eval --json`` shape), so
the rule can be tested, and re-checked by hand, without a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from inspection.retrain.config import GatesConfig
from inspection.retrain.operating import ClassRejects

_EPS = 1e-9  # float noise never decides a gate


@dataclass(frozen=True)
class SetScores:
    """One model on one image set: ``map50`` (None without ground truth), AP50 per class (None for a class
    without ground truth) and ``false_alarms``: predictions at the operating threshold that match nothing."""

    map50: float | None
    per_class_ap50: dict[str, float | None]
    false_alarms: int = 0
    images: int = 0
    gt_per_class: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_eval(cls, summary: Mapping[str, Any]) -> SetScores:
        """From ``EvalResult.to_dict()``: the background row of the confusion matrix counts false alarms."""
        matrix = summary.get("confusion_matrix") or [[0]]
        return cls(
            map50=summary.get("map50"),
            per_class_ap50={name: v.get("ap50") for name, v in (summary.get("per_class") or {}).items()},
            false_alarms=int(sum(matrix[-1][:-1])),
            images=int(summary.get("images") or 0),
            gt_per_class={
                name: int(v.get("gt") or 0) for name, v in (summary.get("per_class") or {}).items()
            },
        )


@dataclass(frozen=True)
class Check:
    """One gate: what was compared, whether it passed, and a sentence saying so."""

    name: str
    passed: bool
    champion: float | None
    challenger: float | None
    limit: float | None
    message: str
    gated: bool = True  # False: reported only (a comparison resting on too few boxes to mean anything)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    checks: tuple[Check, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason, "checks": [asdict(c) for c in self.checks]}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _fixed_checks(champion: SetScores, challenger: SetScores, gates: GatesConfig) -> list[Check]:
    checks = []
    a, b = champion.map50, challenger.map50
    if a is None or b is None:
        checks.append(
            Check("fixed_map50", False, a, b, gates.max_map50_drop, "the fixed set has no labelled boxes")
        )
    else:
        drop = a - b
        ok = drop <= gates.max_map50_drop + _EPS
        checks.append(
            Check(
                "fixed_map50",
                ok,
                a,
                b,
                gates.max_map50_drop,
                f"fixed-set mAP@0.5 {_fmt(a)} -> {_fmt(b)} ({b - a:+.3f}; "
                f"{'within' if ok else 'beyond'} the {gates.max_map50_drop:.3f} drop tolerance)",
            )
        )
    for name, before in champion.per_class_ap50.items():
        if before is None:
            continue  # no ground truth of this class in the fixed set: nothing to lose
        after = challenger.per_class_ap50.get(name)
        if after is None:
            checks.append(
                Check(
                    f"class_ap50:{name}", False, before, None, gates.max_class_ap50_drop, f"{name}: no AP50"
                )
            )
            continue
        drop = before - after
        ok = drop <= gates.max_class_ap50_drop + _EPS
        checks.append(
            Check(
                f"class_ap50:{name}",
                ok,
                before,
                after,
                gates.max_class_ap50_drop,
                f"{name} AP50 {_fmt(before)} -> {_fmt(after)} ({after - before:+.3f}; "
                f"{'within' if ok else 'beyond'} the {gates.max_class_ap50_drop:.3f} drop tolerance)",
            )
        )
    return checks


def _not_significant(challenger: SetScores, gates: GatesConfig) -> str | None:
    """Why the new data's validation part is too thin to decide on, or None."""
    need = gates.min_new_boxes_per_class
    present = {name: n for name, n in challenger.gt_per_class.items() if n > 0}
    if not present:
        return None if challenger.images >= need else f"{challenger.images} background images (needs {need})"
    thin = {name: n for name, n in present.items() if n < need}
    if not thin:
        return None
    listed = ", ".join(f"{name} {n}" for name, n in sorted(thin.items()))
    return f"boxes per class {listed} (needs {need} of each class it holds)"


def _new_check(champion: SetScores | None, challenger: SetScores | None, gates: GatesConfig) -> Check:
    if champion is None or challenger is None or challenger.images == 0:
        return Check(
            "new_data",
            True,
            None,
            None,
            gates.min_new_gain,
            "new data: no validation part (one coil or frame group only): not significant, not gated",
            gated=False,
        )
    thin = _not_significant(challenger, gates)
    a, b = champion.map50, challenger.map50
    if a is not None and b is not None:
        ok = b > a + gates.min_new_gain + _EPS
        check = Check(
            "new_map50",
            ok,
            a,
            b,
            gates.min_new_gain,
            f"new-data mAP@0.5 {_fmt(a)} -> {_fmt(b)} "
            f"({'better' if ok else 'not better'}; needs a gain above {gates.min_new_gain:.3f})",
        )
    else:
        fa, fb = champion.false_alarms, challenger.false_alarms
        ok = fb < fa
        check = Check(
            "new_false_alarms",
            ok,
            float(fa),
            float(fb),
            None,
            f"new data (background only): false alarms {fa} -> {fb} ({'fewer' if ok else 'not fewer'})",
        )
    if thin is None:
        return check
    message = f"{check.message}; not significant: rests on {thin}, not gated"
    return Check(check.name, True, check.champion, check.challenger, check.limit, message, gated=False)


def _operating_checks(
    champion: Mapping[str, ClassRejects], challenger: Mapping[str, ClassRejects], gates: GatesConfig
) -> list[Check]:
    """Per class with boxes: reject recall and false rejects per image, each model at its own thresholds."""
    checks = []
    for name, before in champion.items():
        after = challenger[name]
        if before.gt and before.recall is not None and after.recall is not None:
            ok = before.recall - after.recall <= gates.max_reject_recall_drop + _EPS
            checks.append(
                Check(
                    f"reject_recall:{name}",
                    ok,
                    before.recall,
                    after.recall,
                    gates.max_reject_recall_drop,
                    f"{name} reject recall {_fmt(before.recall)} @{before.threshold:.2f} -> "
                    f"{_fmt(after.recall)} @{after.threshold:.2f} "
                    f"({'within' if ok else 'beyond'} the {gates.max_reject_recall_drop:.3f} drop tolerance)",
                )
            )
        a, b = before.false_rejects_per_image, after.false_rejects_per_image
        ok = b - a <= gates.max_false_reject_rise + _EPS
        checks.append(
            Check(
                f"false_rejects:{name}",
                ok,
                a,
                b,
                gates.max_false_reject_rise,
                f"{name} false rejects per image {a:.3f} ({before.false_rejects}) -> {b:.3f} "
                f"({after.false_rejects}) ({'within' if ok else 'beyond'} the "
                f"{gates.max_false_reject_rise:.3f} rise tolerance)",
            )
        )
    return checks


def decide(
    *,
    champion_fixed: SetScores | None,
    challenger_fixed: SetScores,
    champion_new: SetScores | None,
    challenger_new: SetScores | None,
    gates: GatesConfig,
    champion_points: Mapping[str, ClassRejects] | None = None,
    challenger_points: Mapping[str, ClassRejects] | None = None,
) -> Decision:
    """Promote the challenger or not, with every gate's numbers and one sentence of reasons.

    ``champion_fixed`` None means there is no champion: the challenger is promoted when it has a score on
    the fixed set at all (the first model of a line). ``*_points``: each model's per-class rejects on the
    fixed set at its own operating point (omitted: that gate is not applied).
    """
    if champion_fixed is None:
        ok = challenger_fixed.map50 is not None
        check = Check(
            "no_champion",
            ok,
            None,
            challenger_fixed.map50,
            None,
            f"no champion to compare with; challenger fixed-set mAP@0.5 {_fmt(challenger_fixed.map50)}",
        )
        return Decision(ok, ("promoted: " if ok else "rejected: ") + check.message, (check,))
    checks = _fixed_checks(champion_fixed, challenger_fixed, gates)
    if champion_points is not None and challenger_points is not None:
        checks.extend(_operating_checks(champion_points, challenger_points, gates))
    if gates.require_better_on_new:
        checks.append(_new_check(champion_new, challenger_new, gates))
    failed = [c for c in checks if not c.passed]
    if failed:
        return Decision(False, "rejected: " + "; ".join(c.message for c in failed), tuple(checks))
    per_class = [c for c in checks if ":" in c.name]
    overall = [c for c in checks if ":" not in c.name]
    ap_checks = [c for c in per_class if c.name.startswith("class_ap50:")]
    worst = max(ap_checks, key=lambda c: (c.champion or 0) - (c.challenger or 0), default=None)
    parts = [c.message for c in overall]
    if worst is not None:
        parts.append(f"largest class change: {worst.message}")
    return Decision(True, "promoted: " + "; ".join(parts), tuple(checks))
