"""The tables of the model lifecycle: registered model versions and every activation, the retrain runs
and people's decisions on the runs' data snapshots.

Low-volume and audit-minded (activations and snapshot decisions are never updated). Foreign keys into
other topics' tables are named by string, so this module imports none of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from inspection.storage.schema.base import (
    ACTIVATION_KINDS,
    RETRAIN_STATUSES,
    SNAPSHOT_ACTIONS,
    Base,
    UTCDateTime,
    one_of,
    utcnow,
)


class ModelVersion(Base):
    """A registered model bundle. At most one row has ``is_active`` (a partial unique index enforces it).

    ``version`` is the bundle manifest's version (the registry key); ``manifest`` the whole manifest.json;
    ``metrics`` and ``class_names`` copies of its fields for quick queries. ``activated_at``,
    ``promoted_by`` and ``note`` describe the latest activation (who or which retrain run, and why).
    A row with an empty ``manifest`` is a placeholder made when a frame named a version that was never
    registered (e.g. a spool replayed into a fresh database); registering the bundle later fills it in.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        Index(
            "uq_model_versions_one_active",
            "is_active",
            unique=True,
            sqlite_where=text("is_active"),
            postgresql_where=text("is_active"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str | None] = mapped_column(Text)  # bundle folder as the daemon sees it
    family: Mapped[str | None] = mapped_column(String(50))  # e.g. "yolo", "faster_rcnn"
    class_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # registered at
    is_active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    promoted_by: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)


class RetrainRun(Base):
    """One run of the retraining job, with its champion/challenger decision.

    ``last_review_id`` is the high-water mark: the run consumed every review with ``id`` up to it (and above
    the previous finished run's mark), so a re-run never counts a review twice. ``summary`` holds the data
    added per class and the metrics before/after per class.
    """

    __tablename__ = "retrain_runs"
    __table_args__ = (CheckConstraint(one_of("status", RETRAIN_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    champion_version: Mapped[str | None] = mapped_column(String(100))
    challenger_version: Mapped[str | None] = mapped_column(String(100))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_review_id: Mapped[int | None] = mapped_column(Integer)


class ModelActivation(Base):
    """One activation of a model version, never updated: the audit trail behind ``model_versions.is_active``.

    ``previous_version`` is the version that was active just before (None: none was), ``actor`` who or what
    activated it (``cli:<user>``, ``retrain run 7``, ``daemon``), ``reason`` why, and ``forced`` whether a
    person overrode the gate's rejection of this version (``steel models activate --force``).
    """

    __tablename__ = "model_activations"
    __table_args__ = (
        CheckConstraint(one_of("kind", ACTIVATION_KINDS), name="kind"),
        Index("ix_model_activations_activated_at", "activated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[str] = mapped_column(String(100))
    previous_version: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class SnapshotDecision(Base):
    """A person's decision on a retrain run's data snapshot; the latest one per run counts.

    By default only snapshots of promoted runs are replayed into later training sets; ``accept`` admits a
    rejected run's snapshot, ``drop`` keeps any snapshot out.
    """

    __tablename__ = "retrain_snapshot_decisions"
    __table_args__ = (
        CheckConstraint(one_of("action", SNAPSHOT_ACTIONS), name="action"),
        Index("ix_retrain_snapshot_decisions_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("retrain_runs.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str] = mapped_column(String(100))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text)
