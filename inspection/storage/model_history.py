"""The model registry's reads and its audit trail: versions, the gate's verdict on one, every activation.

``model_registry.activate_model`` writes one :class:`ModelActivation` row per activation through
:func:`record_activation`; ``steel models history`` and the dashboard's Models page read them back with
:func:`activation_history`. Functions take the caller's ``Session`` and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspection.storage.schema import ACTIVATION_KINDS, ModelActivation, ModelVersion, RetrainRun, utcnow


@dataclass(frozen=True)
class Activation:
    """One row of the activation history, as plain values."""

    id: int
    activated_at: datetime
    version: str
    previous_version: str | None
    kind: str
    actor: str | None
    reason: str | None
    forced: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "activated_at": self.activated_at.isoformat(),
            "version": self.version,
            "previous_version": self.previous_version,
            "kind": self.kind,
            "actor": self.actor,
            "reason": self.reason,
            "forced": self.forced,
        }


def record_activation(
    session: Session,
    *,
    version: str,
    previous_version: str | None,
    kind: str,
    actor: str | None,
    reason: str | None,
    forced: bool = False,
) -> ModelActivation:
    """Append one activation to the history (rows are never updated or deleted)."""
    if kind not in ACTIVATION_KINDS:
        raise ValueError(f"activation kind {kind!r} is not one of {ACTIVATION_KINDS}")
    row = ModelActivation(
        activated_at=utcnow(),
        version=version,
        previous_version=previous_version,
        kind=kind,
        actor=actor,
        reason=reason,
        forced=forced,
    )
    session.add(row)
    session.flush()
    return row


def activation_history(session: Session, *, version: str | None = None, limit: int = 100) -> list[Activation]:
    """Activations newest first (optionally those of one version)."""
    stmt = select(ModelActivation).order_by(ModelActivation.id.desc()).limit(limit)
    if version is not None:
        stmt = stmt.where(ModelActivation.version == version)
    return [
        Activation(
            r.id, r.activated_at, r.version, r.previous_version, r.kind, r.actor, r.reason, bool(r.forced)
        )
        for r in session.scalars(stmt)
    ]


def model_versions(session: Session) -> list[ModelVersion]:
    """Every registered version, newest first."""
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def model_version(session: Session, version: str) -> ModelVersion | None:
    """The registered row of ``version``, or None."""
    return session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()


def run_of_challenger(session: Session, version: str) -> RetrainRun | None:
    """The latest retrain run that produced ``version`` as its challenger (None: not made by a run)."""
    stmt = select(RetrainRun).where(RetrainRun.challenger_version == version).order_by(RetrainRun.id.desc())
    return session.scalars(stmt).first()


def gate_rejected(session: Session, version: str) -> RetrainRun | None:
    """The run whose gate rejected ``version`` (its latest run says ``rejected``), else None."""
    run = run_of_challenger(session, version)
    return run if run is not None and run.status == "rejected" else None


def ever_activated(session: Session) -> set[str]:
    """Versions that were on the line at some time (history rows, or an activation before the history)."""
    versions = set(session.scalars(select(ModelActivation.version)))
    versions |= set(
        session.scalars(select(ModelVersion.version).where(ModelVersion.activated_at.is_not(None)))
    )
    return versions
