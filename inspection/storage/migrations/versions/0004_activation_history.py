"""Model activation history and people's decisions on retrain snapshots.

``model_activations``: one row per activation (who, when, from which version, why, forced or not);
``retrain_snapshot_decisions``: ``accept``/``drop`` of a retrain run's snapshot for later replay.
Tables and columns are documented in ``inspection.storage.schema``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_activations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("previous_version", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint("kind IN ('manual', 'retrain', 'daemon')", name=op.f("ck_model_activations_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_activations")),
    )
    op.create_index("ix_model_activations_activated_at", "model_activations", ["activated_at"], unique=False)
    op.create_table(
        "retrain_snapshot_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint("action IN ('accept', 'drop')", name=op.f("ck_retrain_snapshot_decisions_action")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["retrain_runs.id"],
            name=op.f("fk_retrain_snapshot_decisions_run_id_retrain_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_snapshot_decisions")),
    )
    op.create_index(
        "ix_retrain_snapshot_decisions_run_id", "retrain_snapshot_decisions", ["run_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_retrain_snapshot_decisions_run_id", table_name="retrain_snapshot_decisions")
    op.drop_table("retrain_snapshot_decisions")
    op.drop_index("ix_model_activations_activated_at", table_name="model_activations")
    op.drop_table("model_activations")
