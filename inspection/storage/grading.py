"""Coil grading: the plant's rules (per class: count, count per 100 m, longest defect) turn a closed coil's
defects into a grade (``A``/``B``/``scrap``, or ``pass``/``hold``), stored in ``coil_grades``.

The rules are part of the inspection config (``grading:`` in ``configs/inspection.yaml``): the daemon
grades each coil when it closes it (the coil's end event carries the rules, so a coil closed while the
database was away is graded by the rules of that moment when the spool is replayed), and at start-up it
grades its closed coils not yet graded under its current rules (after a rules change, or a coil closed by
the restart backfill). The dashboard reads the same section (:func:`read_grading_rules`) to show the
grades in order, and a writable dashboard grades closed coils that have no grade at all.

A rule names the grade a coil gets *at best* when it breaks the rule; the coil's grade is the worst such
grade, or the best grade when it breaks none. Grading again replaces the row, and the rules' digest is
stored so coils graded under older rules can be regraded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import Field, model_validator
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from datasets.settings import ConfigError, StrictModel, validate_config
from inspection.storage.schema import Coil, CoilGrade, Defect, Frame, utcnow


class GradeRule(StrictModel):
    """One limit. Exactly one of ``max_count``, ``max_per_100m``, ``max_length_m`` is set.

    ``classes`` empty means all classes together; ``min_score`` ignores less certain detections.
    ``max_count: 0`` makes the classes critical: a single defect gives ``grade``.
    """

    grade: str
    classes: tuple[str, ...] = ()
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    max_count: int | None = Field(None, ge=0)
    max_per_100m: float | None = Field(None, ge=0.0)
    max_length_m: float | None = Field(None, ge=0.0)

    @model_validator(mode="after")
    def _one_limit(self) -> GradeRule:
        limits = [self.max_count, self.max_per_100m, self.max_length_m]
        if sum(v is not None for v in limits) != 1:
            raise ValueError("set exactly one of max_count, max_per_100m, max_length_m")
        return self

    @property
    def what(self) -> str:
        return ", ".join(self.classes) if self.classes else "all classes"


def _default_rules() -> list[GradeRule]:
    return [
        GradeRule(grade="scrap", classes=("rolled-in_scale",), min_score=0.5, max_count=0),
        GradeRule(grade="scrap", min_score=0.5, max_per_100m=20.0),
        GradeRule(grade="B", min_score=0.5, max_per_100m=5.0),
        GradeRule(grade="B", classes=("scratches",), min_score=0.5, max_length_m=0.5),
    ]


class GradingRules(StrictModel):
    """The grades, best first, and the rules that lower a coil's grade."""

    grades: tuple[str, ...] = ("A", "B", "scrap")
    rules: list[GradeRule] = Field(default_factory=_default_rules)

    @model_validator(mode="after")
    def _known_grades(self) -> GradingRules:
        if len(self.grades) < 2 or len(set(self.grades)) != len(self.grades):
            raise ValueError("grades: give at least two distinct grades, best first")
        for k, rule in enumerate(self.rules):
            if rule.grade not in self.grades[1:]:
                raise ValueError(
                    f"rules.{k}.grade: {rule.grade!r} is not one of the lower grades {list(self.grades[1:])}"
                )
        return self

    @property
    def digest(self) -> str:
        """Identifies these rules (stored with each grade)."""
        return hashlib.sha256(self.model_dump_json().encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A coil's grade, the sentences saying which rules lowered it, and the figures it rests on."""

    grade: str
    reasons: tuple[str, ...]
    defects: int
    length_m: float | None


def coil_length_m(session: Session, coil_id: int) -> float | None:
    """The coil's length: ``coils.length_m`` when the daemon recorded it, else the metres inspected."""
    recorded = session.scalar(select(Coil.length_m).where(Coil.id == coil_id))
    if recorded is not None:
        return float(recorded)
    inspected = session.scalar(
        select(func.sum(Frame.length_m)).where(Frame.coil_id == coil_id, Frame.status == "ok")
    )
    return float(inspected) if inspected else None


def _measure(session: Session, coil_id: int, rule: GradeRule) -> tuple[int, float | None]:
    """(count, longest length in m) of the coil's defects the rule looks at."""
    where = [Defect.coil_id == coil_id, Defect.score >= rule.min_score]
    if rule.classes:
        where.append(Defect.class_name.in_(rule.classes))
    n, longest = session.execute(select(func.count(), func.max(Defect.length_m)).where(*where)).one()
    return int(n or 0), None if longest is None else float(longest)


def judge(
    rule: GradeRule, count: int, longest_m: float | None, length_m: float | None
) -> tuple[str, bool] | None:
    """``(sentence, lowers the grade)`` when the rule is broken or cannot be checked; None when kept."""
    scope = f"{rule.what} (score ≥ {rule.min_score:g})"
    if rule.max_count is not None and count > rule.max_count:
        return f"{scope}: {count} defect(s) > {rule.max_count} → {rule.grade}", True
    if rule.max_per_100m is not None:
        if not length_m:
            return (
                None if count == 0 else (f"{scope}: coil length unknown, per-100 m limit not checked", False)
            )
        rate = 100.0 * count / length_m
        if rate > rule.max_per_100m:
            return f"{scope}: {rate:.1f} per 100 m > {rule.max_per_100m:g} → {rule.grade}", True
    if rule.max_length_m is not None and longest_m is not None and longest_m > rule.max_length_m:
        return f"{scope}: a defect {longest_m:.2f} m long > {rule.max_length_m:g} m → {rule.grade}", True
    return None


def grade_coil(session: Session, coil_id: int, rules: GradingRules) -> Verdict:
    """Grade one coil under ``rules`` (its current defects) and store it, replacing an older grade."""
    length_m = coil_length_m(session, coil_id)
    rank = {g: k for k, g in enumerate(rules.grades)}
    grade, reasons = rules.grades[0], []
    for rule in rules.rules:
        count, longest = _measure(session, coil_id, rule)
        broken = judge(rule, count, longest, length_m)
        if broken is None:
            continue
        reasons.append(broken[0])
        if broken[1] and rank[rule.grade] > rank[grade]:
            grade = rule.grade
    defects = int(session.scalar(select(func.count()).where(Defect.coil_id == coil_id)) or 0)
    verdict = Verdict(grade=grade, reasons=tuple(reasons), defects=defects, length_m=length_m)
    save_grade(session, coil_id, verdict, rules_digest=rules.digest)
    return verdict


def save_grade(
    session: Session, coil_id: int, verdict: Verdict, *, rules_digest: str, graded_at: datetime | None = None
) -> None:
    """Store (or replace) a coil's grade, in the caller's transaction."""
    session.execute(delete(CoilGrade).where(CoilGrade.coil_id == coil_id))
    session.add(
        CoilGrade(
            coil_id=coil_id,
            grade=verdict.grade,
            reasons=list(verdict.reasons),
            rules_digest=rules_digest,
            defects=verdict.defects,
            length_m=verdict.length_m,
            graded_at=graded_at or utcnow(),
        )
    )
    session.flush()


def coils_to_grade(
    session: Session,
    rules: GradingRules,
    *,
    limit: int = 500,
    source: str | None = None,
    ungraded_only: bool = False,
) -> list[int]:
    """Closed coils (``ended_at`` set) without a grade under these rules, oldest first.

    ``source``: only coils that source has frames of (a daemon grades its own line's coils, not another
    line's under its rules). ``ungraded_only``: only coils with no grade at all (whatever the rules).
    """
    graded = select(CoilGrade.coil_id)
    if not ungraded_only:
        graded = graded.where(CoilGrade.rules_digest == rules.digest)
    where = [Coil.ended_at.is_not(None), Coil.id.not_in(graded)]
    if source is not None:
        where.append(Coil.id.in_(select(Frame.coil_id).where(Frame.source == source).distinct()))
    return [
        int(i)
        for i in session.scalars(select(Coil.id).where(*where).order_by(Coil.ended_at, Coil.id).limit(limit))
    ]


def grade_closed_coils(
    session: Session,
    rules: GradingRules,
    *,
    limit: int = 500,
    source: str | None = None,
    ungraded_only: bool = False,
) -> int:
    """Grade the closed coils :func:`coils_to_grade` names (a backfill); how many were graded."""
    pending = coils_to_grade(session, rules, limit=limit, source=source, ungraded_only=ungraded_only)
    for coil_id in pending:
        grade_coil(session, coil_id, rules)
    return len(pending)


def read_grading_rules(path: str | Path) -> GradingRules:
    """The ``grading:`` section of an inspection config file (the defaults when it has none).

    For readers that must not load the whole daemon config (the dashboard); a bad rule is a
    ``ConfigError`` naming the file and the key path (``grading.rules.0.grade``).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    section = data.get("grading") if isinstance(data, dict) else None
    if section is None:
        return GradingRules()
    if not isinstance(section, dict):
        raise ConfigError(f"{path}:\n  grading: a mapping (grades, rules), got {type(section).__name__}")
    return validate_config(GradingRules, section, source=str(path), prefix="grading")
