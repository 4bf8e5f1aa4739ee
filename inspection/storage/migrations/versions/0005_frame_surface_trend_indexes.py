"""The strip surface of each frame, and the indexes the dashboard's all-time trends read.

``frames.surface``: ``top``/``bottom`` when the source says which surface a frame shows (null: not said).
Additive: older rows keep null, older daemons keep writing without it.

On SQLite, two indexes on the hour of a defect's / an ok frame's time: the Trends page groups a month of
defects by hour and class, which without them sorts every row (about 1 s per million defects). With them
SQLite reads the index in order and sorts nothing, and never the table: each index also holds the
columns its query reads (the time itself too: SQLite 3.40 counts an expression index as covering only
when the columns inside the expression are in it as well). The expressions must stay exactly as
``dashboard.queries.trends.SQLITE_HOUR_OF`` writes them, or SQLite will not use them (a test checks the
plan). PostgreSQL gets none: its
``extract(epoch ...)`` is not immutable, so it cannot be indexed, and it aggregates by hashing anyway.
Alembic's comparison skips expression indexes on SQLite, so the ORM does not list them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_INDEXES = {
    "ix_defects_hour_class_name": (
        "defects",
        "(CAST(strftime('%s', created_at) AS INTEGER) / 3600), class_name, created_at",
    ),
    "ix_frames_status_hour": (
        "frames",
        "status, (CAST(strftime('%s', processed_at) AS INTEGER) / 3600), processed_at, length_m, n_defects, "
        "width, height",
    ),
}


def upgrade() -> None:
    op.add_column("frames", sa.Column("surface", sa.String(length=8), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        for name, (table, columns) in SQLITE_INDEXES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("frames") as batch:
        batch.drop_column("surface")
