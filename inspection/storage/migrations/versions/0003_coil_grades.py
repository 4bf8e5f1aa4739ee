"""Coil grades: one row per graded coil (grade, the rules it broke, the rules' digest).

Written to match ``inspection.storage.schema.CoilGrade`` (tests compare them with Alembic's autogenerate).

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coil_grades",
        sa.Column("coil_id", sa.Integer(), nullable=False),
        sa.Column("grade", sa.String(length=32), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("rules_digest", sa.String(length=64), nullable=False),
        sa.Column("defects", sa.Integer(), nullable=False),
        sa.Column("length_m", sa.Float(), nullable=True),
        sa.Column("graded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["coil_id"], ["coils.id"], name=op.f("fk_coil_grades_coil_id_coils"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("coil_id", name=op.f("pk_coil_grades")),
    )
    op.create_index("ix_coil_grades_graded_at", "coil_grades", ["graded_at"])


def downgrade() -> None:
    op.drop_index("ix_coil_grades_graded_at", table_name="coil_grades")
    op.drop_table("coil_grades")
