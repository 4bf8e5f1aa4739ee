"""Storage of the slow-moving tables on real SQLite and PostgreSQL: lines and coils, the model registry,
reviews and the retrain runs that consume them."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from inspection.storage.frames import record_frame
from inspection.storage.lines import get_or_create_coil, get_or_create_line
from inspection.storage.model_registry import activate_model, active_model, register_model_version
from inspection.storage.repository import Repository
from inspection.storage.reviews import add_review, finish_retrain_run, review_high_water, start_retrain_run
from inspection.storage.schema import Coil, Defect, Line, ModelVersion, Review
from tests.inspection.storage_records import T0, count, defect, frame, manifest


def test_coils_and_lines_are_reused(repo: Repository) -> None:
    with repo.transaction() as s:
        line_id = get_or_create_line(s, "L1", description="hot strip mill, top surface", mm_per_line=0.5)
    with repo.transaction() as s:
        assert get_or_create_line(s, "L1", description="ignored") == line_id
    with repo.transaction() as s:
        coil_id = get_or_create_coil(s, line="L1", code="C-001", started_at=T0)
    with repo.transaction() as s:
        assert get_or_create_coil(s, line="L1", code="C-001") == coil_id
    with repo.transaction() as s:
        assert get_or_create_coil(s, line="L2", code="C-001") != coil_id  # same code on another line
    with repo.transaction() as s:
        line = s.get(Line, line_id)
        coil = s.get(Coil, coil_id)
    assert (line.description, line.mm_per_line) == ("hot strip mill, top surface", 0.5)
    assert (coil.started_at, coil.ended_at, coil.length_m) == (T0, None, None)  # open until its end event


def test_activate_model_keeps_exactly_one_active(repo: Repository) -> None:
    with repo.transaction() as s:
        ids = {v: register_model_version(s, manifest(v), f"models/{v}") for v in ("v1", "v2", "v3")}
    with repo.transaction() as s:
        assert register_model_version(s, manifest("v2"), "models/v2") == ids["v2"]  # idempotent
    with pytest.raises(ValueError, match="different manifest"), repo.transaction() as s:
        register_model_version(s, manifest("v2", map50=0.9), "models/v2")
    with repo.transaction() as s:
        assert active_model(s) is None
    for version in ("v1", "v3", "v2", "v2", "v1"):
        with repo.transaction() as s:
            active = activate_model(s, version, promoted_by="retrain#4", note="rollback test")
        assert active.version == version
        with repo.transaction() as s:
            assert s.scalars(select(ModelVersion.version).where(ModelVersion.is_active)).all() == [version]
    with repo.transaction() as s:
        current = active_model(s)
    assert (current.version, current.family, current.metrics) == ("v1", "yolo", {"map50": 0.5})
    assert current.class_names == manifest("v1")["class_names"]
    assert (current.promoted_by, current.path, current.activated_at.tzinfo) == ("retrain#4", "models/v1", UTC)
    with pytest.raises(LookupError), repo.transaction() as s:
        activate_model(s, "v9")
    # The database itself refuses a second active row, whatever code tries it.
    with pytest.raises(IntegrityError), repo.transaction() as s:
        s.execute(update(ModelVersion).where(ModelVersion.version == "v3").values(is_active=True))


def test_reviews_round_trip(repo: Repository) -> None:
    with repo.transaction() as s:
        record_frame(s, frame(1), [defect(1), defect(2, class_name="inclusion"), defect(3)])
    with repo.transaction() as s:
        d1, d2, d3 = s.scalars(select(Defect.id).order_by(Defect.id)).all()
    at = T0 + timedelta(hours=2)
    with repo.transaction() as s:
        r1 = add_review(s, d1, reviewer="ana", verdict="confirmed", reviewed_at=at)
    with repo.transaction() as s:
        r2 = add_review(s, d2, reviewer="ben", verdict="relabelled", new_class="pitted_surface", note="pits")
    with repo.transaction() as s:
        r3 = add_review(s, d3, reviewer="ana", verdict="rejected", note="water stain")
    assert r1.id < r2.id < r3.id
    with repo.transaction() as s:
        columns = (
            Review.defect_id,
            Review.reviewer,
            Review.verdict,
            Review.old_class,
            Review.new_class,
            Review.note,
        )
        rows = s.execute(select(*columns).order_by(Review.id)).all()
        assert s.get(Review, r1.id).reviewed_at == at
        assert s.get(Defect, d2).class_name == "inclusion"  # the model's output stays as it was
    assert [tuple(r) for r in rows] == [
        (d1, "ana", "confirmed", "scratches", None, None),
        (d2, "ben", "relabelled", "inclusion", "pitted_surface", "pits"),
        (d3, "ana", "rejected", "scratches", None, "water stain"),
    ]
    with pytest.raises(ValueError, match="new class"), repo.transaction() as s:
        add_review(s, d1, reviewer="ana", verdict="relabelled")
    with pytest.raises(ValueError, match="takes no new class"), repo.transaction() as s:
        add_review(s, d1, reviewer="ana", verdict="rejected", new_class="patches")
    with pytest.raises(ValueError, match="verdict"), repo.transaction() as s:
        add_review(s, d1, reviewer="ana", verdict="maybe")
    with pytest.raises(LookupError), repo.transaction() as s:
        add_review(s, 10_000, reviewer="ana", verdict="confirmed")
    with pytest.raises(IntegrityError), repo.transaction() as s:  # the CHECK constraint, below the code
        s.add(Review(defect_id=d1, reviewer="x", verdict="relabelled", old_class="scratches", new_class=None))
    assert count(repo, Review) == 3


def test_retrain_runs_never_count_a_review_twice(repo: Repository) -> None:
    with repo.transaction() as s:
        record_frame(s, frame(1), [defect(i) for i in range(4)])
    with repo.transaction() as s:
        defect_ids = s.scalars(select(Defect.id).order_by(Defect.id)).all()
    with repo.transaction() as s:
        reviews = [add_review(s, d, reviewer="ana", verdict="confirmed").id for d in defect_ids]
    with repo.transaction() as s:
        assert review_high_water(s) == 0
    with repo.transaction() as s:
        crashed = start_retrain_run(s, champion_version="v1")
    with repo.transaction() as s:
        finish_retrain_run(
            s, crashed.id, status="failed", decision_reason="killed", last_review_id=reviews[3]
        )
    with repo.transaction() as s:
        assert review_high_water(s) == 0  # a failed run consumed nothing
    with repo.transaction() as s:
        run = start_retrain_run(s, champion_version="v1")
    summary = {"added": {"scratches": 2}}
    with repo.transaction() as s:
        finish_retrain_run(
            s,
            run.id,
            status="promoted",
            decision_reason="better",
            challenger_version="v2",
            summary=summary,
            last_review_id=reviews[1],
        )
    with pytest.raises(ValueError, match="already finished"), repo.transaction() as s:
        finish_retrain_run(s, run.id, status="rejected", decision_reason="twice")
    with repo.transaction() as s:
        assert review_high_water(s) == reviews[1]
    with repo.transaction() as s:
        later = start_retrain_run(s, champion_version="v2")
    with repo.transaction() as s:
        finish_retrain_run(s, later.id, status="rejected", decision_reason="lost", last_review_id=reviews[3])
    with repo.transaction() as s:
        used = s.execute(select(Review.id, Review.used_in_retrain_run_id).order_by(Review.id)).all()
    assert [tuple(u) for u in used] == list(zip(reviews, [run.id, run.id, later.id, later.id], strict=True))
