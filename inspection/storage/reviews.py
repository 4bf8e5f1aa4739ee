"""Operators' verdicts on defects, and the retrain runs that consume them exactly once.

A review never changes its defect row (that stays the model's output). A retrain run marks the reviews it
used, up to its high-water mark, in the transaction that records its decision, so a re-run after a crash or
a rejection never counts a review twice. The retraining job's other reads and writes live in
:mod:`inspection.storage.retrain_store`. Functions take the caller's ``Session`` and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from inspection.storage.schema import RETRAIN_STATUSES, REVIEW_VERDICTS, Defect, RetrainRun, Review, utcnow


def add_review(
    session: Session,
    defect_id: int,
    *,
    reviewer: str,
    verdict: str,
    new_class: str | None = None,
    note: str | None = None,
    reviewed_at: datetime | None = None,
) -> Review:
    """Store an operator's verdict on a defect; ``old_class`` is taken from the defect.

    ``relabelled`` needs a ``new_class`` different from the defect's class; ``confirmed`` and ``rejected``
    take none (confirming with the same class is accepted and stored without one). LookupError for an
    unknown defect, ValueError for an inconsistent verdict.
    """
    defect = session.get(Defect, defect_id)
    if defect is None:
        raise LookupError(f"defect {defect_id} does not exist")
    if not reviewer.strip():
        raise ValueError("a review needs the reviewer's name")
    if verdict not in REVIEW_VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {REVIEW_VERDICTS}")
    if new_class == defect.class_name and verdict == "confirmed":
        new_class = None
    if verdict == "relabelled" and (not new_class or new_class == defect.class_name):
        raise ValueError(f"relabelled needs a new class different from {defect.class_name!r}")
    if verdict != "relabelled" and new_class is not None:
        raise ValueError(f"verdict {verdict!r} takes no new class (got {new_class!r})")
    review = Review(
        defect_id=defect_id,
        reviewer=reviewer,
        reviewed_at=reviewed_at or utcnow(),
        verdict=verdict,
        old_class=defect.class_name,
        new_class=new_class,
        note=note,
    )
    session.add(review)
    session.flush()
    return review


def review_high_water(session: Session) -> int:
    """Highest review id consumed by a finished (promoted or rejected) retrain run; 0 when none."""
    stmt = select(func.max(RetrainRun.last_review_id)).where(RetrainRun.status.in_(("promoted", "rejected")))
    return int(session.scalar(stmt) or 0)


def start_retrain_run(session: Session, *, champion_version: str | None = None) -> RetrainRun:
    """Open a retrain run (status ``running``)."""
    run = RetrainRun(started_at=utcnow(), status="running", champion_version=champion_version, summary={})
    session.add(run)
    session.flush()
    return run


def finish_retrain_run(
    session: Session,
    run_id: int,
    *,
    status: str,
    decision_reason: str,
    challenger_version: str | None = None,
    summary: Mapping[str, Any] | None = None,
    last_review_id: int | None = None,
) -> RetrainRun:
    """Close a running retrain run with its decision.

    For ``promoted``/``rejected`` runs, reviews above the previous high-water mark up to ``last_review_id``
    are marked as used by this run, in the same transaction. ValueError if the run is not running anymore
    (a re-run must start a new run instead of finishing an old one twice).
    """
    if status not in RETRAIN_STATUSES or status == "running":
        raise ValueError(f"a retrain run finishes as one of {RETRAIN_STATUSES[1:]}, not {status!r}")
    run = session.get(RetrainRun, run_id)
    if run is None:
        raise LookupError(f"retrain run {run_id} does not exist")
    if run.status != "running":
        raise ValueError(f"retrain run {run_id} already finished as {run.status!r}")
    previous = review_high_water(session)
    run.status = status
    run.finished_at = utcnow()
    run.decision_reason = decision_reason
    run.challenger_version = challenger_version
    run.summary = dict(summary or {})
    run.last_review_id = last_review_id
    if status in ("promoted", "rejected") and last_review_id is not None:
        session.execute(
            update(Review)
            .where(Review.id > previous, Review.id <= last_review_id, Review.used_in_retrain_run_id.is_(None))
            .values(used_in_retrain_run_id=run.id)
        )
    session.flush()
    return run
