"""The retraining job's reads and writes: its runs, the reviews it consumes, the defects it cuts windows
around, and people's decisions on which snapshots may be replayed.

Functions take the caller's ``Session`` and never commit (see :mod:`inspection.storage.repository`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import String, func, select
from sqlalchemy.orm import Session

from inspection.storage.schema import (
    SNAPSHOT_ACTIONS,
    Defect,
    Frame,
    RetrainRun,
    Review,
    SnapshotDecision,
    utcnow,
)

_CHUNK = 500  # ids per IN (...) list
# Width of the audit tables' name columns (retrain_snapshot_decisions.decided_by, model_activations.actor).
AUDIT_NAME_CHARS = cast(String, SnapshotDecision.__table__.c.decided_by.type).length or 100
FINISHED = ("promoted", "rejected")


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


# ---------------------------------------------------------------- runs


def open_retrain_runs(session: Session) -> list[RetrainRun]:
    """Runs still ``running`` (killed or in progress), oldest first."""
    stmt = select(RetrainRun).where(RetrainRun.status == "running").order_by(RetrainRun.id)
    return list(session.scalars(stmt))


def recent_retrain_runs(session: Session, limit: int = 20) -> list[RetrainRun]:
    """The latest runs, newest first."""
    return list(session.scalars(select(RetrainRun).order_by(RetrainRun.id.desc()).limit(limit)))


def retrain_run(session: Session, run_id: int) -> RetrainRun | None:
    return session.get(RetrainRun, run_id)


def update_open_run_summary(session: Session, run_id: int, values: Mapping[str, Any]) -> bool:
    """Merge ``values`` into a running run's summary (progress the dashboard shows); False if not running."""
    run = session.get(RetrainRun, run_id)
    if run is None or run.status != "running":
        return False
    run.summary = {**(run.summary or {}), **values}
    return True


def finished_run_ids(session: Session, *, before: int) -> list[int]:
    """Promoted or rejected runs with ids below ``before``, oldest first."""
    stmt = (
        select(RetrainRun.id)
        .where(RetrainRun.status.in_(FINISHED), RetrainRun.id < before)
        .order_by(RetrainRun.id)
    )
    return [int(i) for i in session.scalars(stmt)]


# ---------------------------------------------------------------- snapshot decisions


def record_snapshot_decision(session: Session, run_id: int, *, action: str, by: str, reason: str) -> None:
    """A person accepts or drops run ``run_id``'s snapshot for later replay (LookupError: no such run;
    ValueError: bad action, empty name or reason, or a run that never finished)."""
    if action not in SNAPSHOT_ACTIONS:
        raise ValueError(f"snapshot action {action!r} is not one of {SNAPSHOT_ACTIONS}")
    if not by.strip() or not reason.strip():
        raise ValueError("a snapshot decision needs who decided (--by) and why (--reason)")
    width = AUDIT_NAME_CHARS
    if len(by) > width:  # PostgreSQL would refuse the row with a DataError; SQLite would store it whole
        raise ValueError(f"who decided (--by) is recorded in at most {width} characters, got {len(by)}")
    run = session.get(RetrainRun, run_id)
    if run is None:
        raise LookupError(f"retrain run {run_id} does not exist")
    if run.status not in FINISHED:
        raise ValueError(
            f"retrain run {run_id} is {run.status}: only finished runs have a snapshot to replay"
        )
    session.add(
        SnapshotDecision(run_id=run_id, action=action, decided_by=by, decided_at=utcnow(), reason=reason)
    )
    session.flush()


def latest_snapshot_decisions(session: Session) -> dict[int, SnapshotDecision]:
    """run id -> the latest decision on its snapshot."""
    latest: dict[int, SnapshotDecision] = {}
    for row in session.scalars(select(SnapshotDecision).order_by(SnapshotDecision.id)):
        latest[row.run_id] = row
    return latest


def replayable_run_ids(session: Session, *, before: int) -> list[int]:
    """Runs below ``before`` whose snapshots join later training sets, oldest first: promoted runs unless a
    person dropped their snapshot, and rejected runs only when a person accepted theirs."""
    decisions = latest_snapshot_decisions(session)
    stmt = (
        select(RetrainRun.id, RetrainRun.status)
        .where(RetrainRun.status.in_(FINISHED), RetrainRun.id < before)
        .order_by(RetrainRun.id)
    )
    out = []
    for run_id, status in session.execute(stmt).all():
        decision = decisions.get(int(run_id))
        accepted = status == "promoted" if decision is None else decision.action == "accept"
        if accepted:
            out.append(int(run_id))
    return out


# ---------------------------------------------------------------- reviews and defects


def newest_review_id(session: Session) -> int:
    return int(session.scalar(select(func.max(Review.id))) or 0)


def latest_open_run_id(session: Session) -> int | None:
    stmt = select(RetrainRun.id).where(RetrainRun.status == "running").order_by(RetrainRun.id.desc())
    found = session.scalar(stmt)
    return None if found is None else int(found)


def verdict_counts(session: Session, *, after: int, up_to: int) -> dict[str, int]:
    """How many reviews of each verdict have ``after < id <= up_to`` (every row, repeats included)."""
    rows = session.execute(
        select(Review.verdict, func.count())
        .where(Review.id > after, Review.id <= up_to)
        .group_by(Review.verdict)
    ).all()
    counts = {"confirmed": 0, "relabelled": 0, "rejected": 0}
    counts.update({verdict: int(n) for verdict, n in rows})
    return counts


def reviewed_defect_ids(session: Session, *, after: int, up_to: int) -> list[int]:
    """Defects with at least one review in ``(after, up_to]``, ascending."""
    stmt = (
        select(Review.defect_id)
        .where(Review.id > after, Review.id <= up_to)
        .distinct()
        .order_by(Review.defect_id)
    )
    return [int(i) for i in session.scalars(stmt)]


def defects_with_frames(session: Session, defect_ids: Sequence[int]) -> list[tuple[Defect, Frame]]:
    """``(defect, its frame)`` for the ids, ordered by frame then defect."""
    pairs: list[tuple[Defect, Frame]] = []
    for chunk in _chunks(list(defect_ids)):
        stmt = select(Defect, Frame).join(Frame, Defect.frame_id == Frame.id).where(Defect.id.in_(chunk))
        pairs.extend((d, f) for d, f in session.execute(stmt).all())
    return sorted(pairs, key=lambda pair: (pair[1].id, pair[0].id))


def latest_reviews(session: Session, defect_ids: Sequence[int], *, up_to: int) -> dict[int, Review]:
    """defect id -> its latest review with ``id <= up_to``."""
    latest: dict[int, Review] = {}
    for chunk in _chunks(list(defect_ids)):
        stmt = select(Review).where(Review.defect_id.in_(chunk), Review.id <= up_to).order_by(Review.id)
        for review in session.scalars(stmt):
            latest[review.defect_id] = review  # ascending ids: the last one wins
    return latest


def frame_defects(session: Session, frame_id: int) -> list[Defect]:
    return list(session.scalars(select(Defect).where(Defect.frame_id == frame_id).order_by(Defect.id)))


def strip_neighbour_defects(session: Session, frame: Frame) -> list[Defect]:
    """Defects stored with other frames of the same source and coil whose strip lines overlap ``frame``'s
    (line-scan frames overlap; the tracker stores a defect once, with one of them)."""
    if frame.start_line is None or not frame.height:
        return []
    top, bottom = frame.start_line, frame.start_line + frame.height
    coil = Frame.coil_id.is_(None) if frame.coil_id is None else Frame.coil_id == frame.coil_id
    stmt = (
        select(Defect)
        .join(Frame, Defect.frame_id == Frame.id)
        .where(
            Frame.source == frame.source,
            coil,
            Defect.frame_id != frame.id,
            Defect.sx1.is_not(None),
            Defect.sy1.is_not(None),
            Defect.sx2.is_not(None),
            Defect.sy2.is_not(None),
            Defect.sy1 < bottom,
            Defect.sy2 > top,
        )
        .order_by(Defect.id)
    )
    return list(session.scalars(stmt))


def finished_runs(session: Session) -> list[RetrainRun]:
    """Every run that is no longer running, newest first."""
    stmt = select(RetrainRun).where(RetrainRun.status != "running").order_by(RetrainRun.id.desc())
    return list(session.scalars(stmt))
