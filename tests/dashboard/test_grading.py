"""Coil grading (issue 16 item 13) and closing stale coils (item 4's backfill helper), on the seeded
database: each grade and figure is worked out here again with plain SQL."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.config import load_dashboard_config
from datasets.settings import ConfigError, load_config
from inspection.config import InspectionConfig
from inspection.storage.db import make_engine, upgrade
from inspection.storage.grading import GradeRule, GradingRules, coils_to_grade, grade_closed_coils, grade_coil
from inspection.storage.schema import Coil, CoilGrade
from tests.dashboard.conftest import Seed, seed_database
from tests.dashboard.pagekit import sql

# scrap: any scratch scored 0.9 or more; B: more than 20 defects per 100 m (any class, any score);
# B: a patch longer than 0.45 m
RULES = GradingRules(
    grades=("A", "B", "scrap"),
    rules=[
        GradeRule(grade="scrap", classes=("scratches",), min_score=0.9, max_count=0),
        GradeRule(grade="B", max_per_100m=20.0),
        GradeRule(grade="B", classes=("patches",), max_length_m=0.45),
    ],
)


def _expected_grade(url: str, coil_id: int) -> tuple[str, int]:
    """The grade the rules above give, from SQL: (grade, how many rules broken)."""
    ((scratches,),) = sql(
        url,
        "SELECT COUNT(*) FROM defects WHERE coil_id=? AND class_name='scratches' AND score>=0.9",
        (coil_id,),
    )
    ((defects, longest_patch),) = sql(
        url,
        "SELECT COUNT(*), MAX(CASE WHEN class_name='patches' THEN length_m END) FROM defects WHERE coil_id=?",
        (coil_id,),
    )
    ((recorded, inspected),) = sql(
        url,
        "SELECT c.length_m, (SELECT TOTAL(length_m) FROM frames WHERE coil_id=c.id AND status='ok') "
        "FROM coils c WHERE c.id=?",
        (coil_id,),
    )
    length = recorded if recorded is not None else inspected
    broken = [scratches > 0, 100.0 * defects / length > 20.0, (longest_patch or 0.0) > 0.45]
    grade = "scrap" if broken[0] else "B" if any(broken[1:]) else "A"
    return grade, sum(broken)


def test_closed_coils_are_graded_by_the_rules_and_stored_once(seeded_url: str, seed: Seed) -> None:
    engine = make_engine(seeded_url)
    with Session(engine) as s, s.begin():
        assert coils_to_grade(s, RULES) == [seed.coil_ids["C100"]]  # the only closed coil
        assert grade_closed_coils(s, RULES) == 1
        assert grade_closed_coils(s, RULES) == 0  # nothing left under these rules
        for code in ("C101", "C200"):  # open coils can be graded on demand too
            grade_coil(s, seed.coil_ids[code], RULES)
    engine.dispose()
    rows = {
        coil_id: (grade, reasons, digest)
        for coil_id, grade, reasons, digest in sql(
            seeded_url, "SELECT coil_id, grade, reasons, rules_digest FROM coil_grades"
        )
    }
    assert set(rows) == set(seed.coil_ids.values())
    grades = set()
    for coil_id, (grade, reasons, digest) in rows.items():
        expected, n_broken = _expected_grade(seeded_url, coil_id)
        assert grade == expected and len(json.loads(reasons)) == n_broken and digest == RULES.digest
        grades.add(grade)
    assert len(grades) >= 2  # the rules really tell the coils apart


def test_new_rules_regrade_and_replace_the_old_grade(seeded_url: str, seed: Seed) -> None:
    lenient = GradingRules(rules=[GradeRule(grade="B", max_count=10**6)])
    engine = make_engine(seeded_url)
    with Session(engine) as s, s.begin():
        grade_closed_coils(s, RULES)
        assert coils_to_grade(s, lenient) == [seed.coil_ids["C100"]]  # graded under other rules
        grade_closed_coils(s, lenient)
    engine.dispose()
    assert sql(seeded_url, "SELECT coil_id, grade, reasons FROM coil_grades") == [
        (seed.coil_ids["C100"], "A", "[]")
    ]


def test_grading_rules_name_the_bad_key() -> None:
    with pytest.raises(ValidationError, match="exactly one of max_count"):
        GradeRule(grade="B", max_count=1, max_per_100m=2.0)
    with pytest.raises(ValidationError, match=r"rules\.0\.grade: 'C' is not one of the lower grades"):
        GradingRules(grades=("A", "B"), rules=[GradeRule(grade="C", max_count=0)])
    with pytest.raises(ValidationError, match="at least two distinct grades"):
        GradingRules(grades=("pass",), rules=[])


def test_grading_gives_the_same_grades_on_postgresql(
    pg_url: str, seeded_url: str, seed: Seed, neu_images, tmp_path
) -> None:
    upgrade(pg_url)
    seed_database(pg_url, images=neu_images, media=tmp_path / "crops", t0=seed.t0)
    graded = {}
    for url in (pg_url, seeded_url):
        engine = make_engine(url)
        with Session(engine) as s, s.begin():
            for coil_id in s.scalars(select(Coil.id)):
                grade_coil(s, coil_id, RULES)
            graded[url] = {
                code: (grade, tuple(reasons))
                for code, grade, reasons in s.execute(
                    select(Coil.code, CoilGrade.grade, CoilGrade.reasons).join(
                        CoilGrade, CoilGrade.coil_id == Coil.id
                    )
                )
            }
        engine.dispose()
    assert graded[pg_url] == graded[seeded_url] and len(graded[pg_url]) == 3


def test_a_bad_grading_config_names_the_key(tmp_path) -> None:
    cfg = tmp_path / "dashboard.yaml"
    cfg.write_text(
        "grading:\n  grades: [pass, hold]\n  rules:\n    - {grade: scrap, max_count: 0}\n"
        "plant_timezone: Europe/Berlin\nstrip_width_m: {L1: 12}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_dashboard_config(cfg)
    text = str(err.value)
    assert "grading" in text and "'scrap' is not one of the lower grades ['hold']" in text
    assert "strip_width_m" in text and "between 0 and 10" in text


def test_the_daemon_and_the_dashboard_grade_by_the_same_rules_from_the_inspection_config(tmp_path) -> None:
    """The rules are the inspection config's ``grading:`` section; the dashboard reads that section (it
    had its own, separate copy before) unless it is given a copy of its own."""
    daemon_file = tmp_path / "inspection.yaml"
    daemon_file.write_text(
        "grading:\n  grades: [pass, hold]\n  rules:\n"
        "    - {grade: hold, classes: [scratches], max_length_m: 0.2}\n",
        encoding="utf-8",
    )
    dashboard_file = tmp_path / "dashboard.yaml"
    dashboard_file.write_text(f"inspection_config: {daemon_file}\n", encoding="utf-8")
    daemon_rules = load_config(daemon_file, InspectionConfig).grading
    shown = load_dashboard_config(dashboard_file).grading_rules
    assert shown == daemon_rules and shown.grades == ("pass", "hold")
    assert shown.digest == daemon_rules.digest  # the digest stored with each grade the daemon makes

    copy = tmp_path / "own-copy.yaml"
    copy.write_text(
        f"inspection_config: {daemon_file}\ngrading: {{grades: [A, B], rules: []}}\n", encoding="utf-8"
    )
    assert load_dashboard_config(copy).grading_rules.grades == ("A", "B")


def test_a_bad_grading_rule_in_the_inspection_config_names_the_file_and_key_path(tmp_path) -> None:
    daemon_file = tmp_path / "inspection.yaml"
    daemon_file.write_text(
        "grading:\n  rules:\n    - {grade: A, max_count: 0}\n    - {grade: B, max_count: -1}\n",
        encoding="utf-8",
    )
    for load in (
        lambda: load_config(daemon_file, InspectionConfig),
        lambda: load_dashboard_config(tmp_path / "d.yaml"),
    ):
        (tmp_path / "d.yaml").write_text(f"inspection_config: {daemon_file}\n", encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load()
        text = str(err.value)
        assert str(daemon_file) in text and "grading.rules.1.max_count: -1 is not >= 0" in text
