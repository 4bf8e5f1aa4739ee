"""The anomaly map's heat-map crop of an ``anomaly`` defect: ``defects.map_path`` (NULL for other classes).

Documented in ``inspection.storage.schema``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("defects") as batch:
        batch.add_column(sa.Column("map_path", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("defects") as batch:
        batch.drop_column("map_path")
