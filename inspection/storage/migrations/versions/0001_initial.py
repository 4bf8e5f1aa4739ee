"""Initial schema: lines, coils, model_versions, frames, defects, reviews, retrain_runs, alarms, source_gaps.

Written to match ``inspection.storage.schema`` exactly (tests compare them with Alembic's autogenerate);
the tables and columns are documented there.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("mm_per_line", sa.Float(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lines")),
        sa.UniqueConstraint("name", name=op.f("uq_lines_name")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("family", sa.String(length=50), nullable=True),
        sa.Column("class_names", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("activated_at", _utc(), nullable=True),
        sa.Column("promoted_by", sa.String(length=100), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_model_versions_version")),
    )
    # At most one active model: a partial unique index over the rows with is_active true.
    op.create_index(
        "uq_model_versions_one_active",
        "model_versions",
        ["is_active"],
        unique=True,
        sqlite_where=sa.text("is_active"),
        postgresql_where=sa.text("is_active"),
    )
    op.create_table(
        "retrain_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("champion_version", sa.String(length=100), nullable=True),
        sa.Column("challenger_version", sa.String(length=100), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("last_review_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'promoted', 'rejected', 'failed')", name=op.f("ck_retrain_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_runs")),
    )
    op.create_table(
        "coils",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("length_m", sa.Float(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_coils_line_id_lines")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coils")),
        sa.UniqueConstraint("line_id", "code", name=op.f("uq_coils_line_id_code")),
    )
    op.create_table(
        "frames",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("coil_id", sa.Integer(), nullable=True),
        sa.Column("captured_at", _utc(), nullable=True),
        sa.Column("processed_at", _utc(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("start_line", sa.BigInteger(), nullable=True),
        sa.Column("position_m", sa.Float(), nullable=True),
        sa.Column("length_m", sa.Float(), nullable=True),
        sa.Column("image_path", sa.Text(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("n_defects", sa.Integer(), nullable=False),
        sa.CheckConstraint("status IN ('ok', 'failed', 'dropped')", name=op.f("ck_frames_status")),
        sa.ForeignKeyConstraint(["coil_id"], ["coils.id"], name=op.f("fk_frames_coil_id_coils")),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_frames_line_id_lines")),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_frames_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_frames")),
        sa.UniqueConstraint("source", "seq", name=op.f("uq_frames_source_seq")),
    )
    op.create_index("ix_frames_processed_at", "frames", ["processed_at"])
    op.create_index("ix_frames_line_id_processed_at", "frames", ["line_id", "processed_at"])
    op.create_index("ix_frames_coil_id_position_m", "frames", ["coil_id", "position_m"])
    op.create_table(
        "defects",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("frame_id", _big_id(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("coil_id", sa.Integer(), nullable=True),
        sa.Column("class_name", sa.String(length=100), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("sx1", sa.Float(), nullable=True),
        sa.Column("sy1", sa.Float(), nullable=True),
        sa.Column("sx2", sa.Float(), nullable=True),
        sa.Column("sy2", sa.Float(), nullable=True),
        sa.Column("position_m", sa.Float(), nullable=True),
        sa.Column("cross_m", sa.Float(), nullable=True),
        sa.Column("length_m", sa.Float(), nullable=True),
        sa.Column("width_m", sa.Float(), nullable=True),
        sa.Column("track_id", sa.String(length=64), nullable=True),
        sa.Column("first_frame_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_frame_seq", sa.BigInteger(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("crop_path", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.CheckConstraint("score >= 0 AND score <= 1", name=op.f("ck_defects_score_range")),
        sa.ForeignKeyConstraint(["coil_id"], ["coils.id"], name=op.f("fk_defects_coil_id_coils")),
        sa.ForeignKeyConstraint(
            ["frame_id"], ["frames.id"], name=op.f("fk_defects_frame_id_frames"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_defects_line_id_lines")),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_defects_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_defects")),
    )
    op.create_index("ix_defects_created_at", "defects", ["created_at"])
    op.create_index("ix_defects_class_name_created_at", "defects", ["class_name", "created_at"])
    op.create_index("ix_defects_coil_id_position_m", "defects", ["coil_id", "position_m"])
    op.create_index("ix_defects_line_id_created_at", "defects", ["line_id", "created_at"])
    op.create_index("ix_defects_frame_id", "defects", ["frame_id"])
    op.create_index("ix_defects_track_id", "defects", ["track_id"])
    op.create_table(
        "alarms",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("frame_id", _big_id(), nullable=False),
        sa.Column("defect_id", _big_id(), nullable=True),
        sa.Column("sink", sa.String(length=50), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("sent_at", _utc(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'acked', 'failed')", name=op.f("ck_alarms_status")),
        sa.ForeignKeyConstraint(
            ["defect_id"], ["defects.id"], name=op.f("fk_alarms_defect_id_defects"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["frame_id"], ["frames.id"], name=op.f("fk_alarms_frame_id_frames"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
        sa.UniqueConstraint(
            "frame_id", "sink", "kind", "sent_at", name=op.f("uq_alarms_frame_id_sink_kind_sent_at")
        ),
    )
    op.create_index("ix_alarms_sent_at", "alarms", ["sent_at"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("defect_id", _big_id(), nullable=False),
        sa.Column("reviewer", sa.String(length=100), nullable=False),
        sa.Column("reviewed_at", _utc(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("old_class", sa.String(length=100), nullable=False),
        sa.Column("new_class", sa.String(length=100), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("used_in_retrain_run_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "verdict <> 'relabelled' OR new_class IS NOT NULL", name=op.f("ck_reviews_relabel_has_class")
        ),
        sa.CheckConstraint(
            "verdict IN ('confirmed', 'rejected', 'relabelled')", name=op.f("ck_reviews_verdict")
        ),
        sa.ForeignKeyConstraint(
            ["defect_id"], ["defects.id"], name=op.f("fk_reviews_defect_id_defects"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["used_in_retrain_run_id"],
            ["retrain_runs.id"],
            name=op.f("fk_reviews_used_in_retrain_run_id_retrain_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sqlite_autoincrement=True,  # ids never reused: retraining uses reviews.id as a high-water mark
    )
    op.create_index("ix_reviews_defect_id", "reviews", ["defect_id"])
    op.create_index("ix_reviews_reviewed_at", "reviews", ["reviewed_at"])
    op.create_table(
        "source_gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("first_missing_line", sa.BigInteger(), nullable=True),
        sa.Column("missing_lines", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_source_gaps_line_id_lines")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_gaps")),
        sa.UniqueConstraint("source", "started_at", name=op.f("uq_source_gaps_source_started_at")),
    )
    op.create_index("ix_source_gaps_started_at", "source_gaps", ["started_at"])


def downgrade() -> None:
    for table in (
        "reviews",
        "alarms",
        "defects",
        "frames",
        "coils",
        "retrain_runs",
        "model_versions",
        "lines",
    ):
        op.drop_table(table)  # indexes go with their tables
