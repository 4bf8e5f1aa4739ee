"""The promotion rule: a pure function of two models' scores and the configured tolerances.

A challenger replaces the champion only when all of these hold:

1. **Fixed set, overall**: its mAP@0.5 on the fixed set (never trained on) is at most ``max_map50_drop``
   below the champion's.
2. **Fixed set, per class**: no class with ground truth there loses more than ``max_class_ap50_drop`` AP50.
3. **New data** (when ``require_better_on_new``): on the validation part of the newly reviewed data it is
   better: a mAP@0.5 above the champion's by more than ``min_new_gain`` or, when that part holds background
   images only (operators rejected false alarms), fewer false alarms at each model's operating threshold.

Scores are read from evaluation summaries (``EvalResult.to_dict()``, the ``steel eval --json`` shape), so
the rule can be tested, and re-checked by hand, without a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from inspection.retrain.config import GatesConfig

_EPS = 1e-9  # float noise never decides a gate


@dataclass(frozen=True)
class SetScores:
    """One model on one image set: ``map50`` (None without ground truth), AP50 per class (None for a class
    without ground truth) and ``false_alarms``: predictions at the operating threshold that match nothing."""

    map50: float | None
    per_class_ap50: dict[str, float | None]
    false_alarms: int = 0
    images: int = 0

    @classmethod
    def from_eval(cls, summary: Mapping[str, Any]) -> SetScores:
        """From ``EvalResult.to_dict()``: the background row of the confusion matrix counts false alarms."""
        matrix = summary.get("confusion_matrix") or [[0]]
        return cls(
            map50=summary.get("map50"),
            per_class_ap50={name: v.get("ap50") for name, v in (summary.get("per_class") or {}).items()},
            false_alarms=int(sum(matrix[-1][:-1])),
            images=int(summary.get("images") or 0),
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


def _new_check(champion: SetScores | None, challenger: SetScores | None, gates: GatesConfig) -> Check:
    if champion is None or challenger is None or challenger.images == 0:
        return Check(
            "new_data", False, None, None, gates.min_new_gain, "no new validation images to compare on"
        )
    a, b = champion.map50, challenger.map50
    if a is not None and b is not None:
        ok = b > a + gates.min_new_gain + _EPS
        return Check(
            "new_map50",
            ok,
            a,
            b,
            gates.min_new_gain,
            f"new-data mAP@0.5 {_fmt(a)} -> {_fmt(b)} "
            f"({'better' if ok else 'not better'}; needs a gain above {gates.min_new_gain:.3f})",
        )
    fa, fb = champion.false_alarms, challenger.false_alarms
    ok = fb < fa
    return Check(
        "new_false_alarms",
        ok,
        float(fa),
        float(fb),
        None,
        f"new data (background only): false alarms {fa} -> {fb} ({'fewer' if ok else 'not fewer'})",
    )


def decide(
    *,
    champion_fixed: SetScores | None,
    challenger_fixed: SetScores,
    champion_new: SetScores | None,
    challenger_new: SetScores | None,
    gates: GatesConfig,
) -> Decision:
    """Promote the challenger or not, with every gate's numbers and one sentence of reasons.

    ``champion_fixed`` None means there is no champion: the challenger is promoted when it has a score on
    the fixed set at all (the first model of a line).
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
    if gates.require_better_on_new:
        checks.append(_new_check(champion_new, challenger_new, gates))
    failed = [c for c in checks if not c.passed]
    if failed:
        return Decision(False, "rejected: " + "; ".join(c.message for c in failed), tuple(checks))
    overall = [c for c in checks if not c.name.startswith("class_ap50:")]
    per_class = [c for c in checks if c.name.startswith("class_ap50:")]
    worst = max(per_class, key=lambda c: (c.champion or 0) - (c.challenger or 0), default=None)
    parts = [c.message for c in overall]
    if worst is not None:
        parts.append(f"largest class change: {worst.message}")
    return Decision(True, "promoted: " + "; ".join(parts), tuple(checks))
