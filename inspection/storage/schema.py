"""The inspection database: tables written by the daemon, read by the dashboard and the retraining job.

SQLAlchemy 2 typed ORM, portable between SQLite (embedded default) and PostgreSQL. Alembic migrations in
``inspection/storage/migrations`` build exactly this schema (a test compares them). Imports SQLAlchemy only,
so the dashboard can import it without torch.

Conventions (what a reader of raw SQL needs to know):

* **Times** are timezone-aware UTC (``DateTime(timezone=True)``). PostgreSQL stores ``timestamptz`` and the
  engine pins the session time zone to UTC; SQLite stores UTC text ``'YYYY-MM-DD HH:MM:SS.ffffff'`` (no
  offset, always 6 decimals, so text order is time order and ``strftime('%Y-%m-%d %H', col)`` buckets
  by hour).
  Python code always gets aware UTC ``datetime`` objects back; a naive datetime written is taken as UTC.
* **Enumerations** are short strings guarded by CHECK constraints (no native enum types): values below in
  ``FRAME_STATUSES``, ``REVIEW_VERDICTS``, ``RETRAIN_STATUSES`` and ``ALARM_STATUSES``.
* **JSON** columns use the portable ``JSON`` type (``json`` on PostgreSQL, text on SQLite).
* **Units** are in the column names: ``_m`` metres, ``_ms`` milliseconds; bare box coordinates are pixels.
* **Coordinates**: frame boxes ``x1,y1,x2,y2`` are 0-based float pixels of the frame, ``x2``/``y2`` exclusive,
  ``x`` across the strip (camera pixel) and ``y`` along it (line within the frame). Strip boxes
  ``sx1,sy1,sx2,sy2`` are the same box in strip pixels: ``sx`` across (camera pixel), ``sy`` along, counted
  in encoder lines from the start of the coil (``frames.start_line + y``).
* **Ids** of the high-volume tables (frames, defects, alarms) are 64-bit on PostgreSQL; on SQLite every id
  is the 64-bit rowid. ``reviews.id`` never reuses a value (``AUTOINCREMENT`` on SQLite, a sequence on
  PostgreSQL), because retraining uses it as a high-water mark.
* Constraint and index names follow ``NAMING_CONVENTION`` so migrations can refer to them on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

FRAME_STATUSES = ("ok", "failed", "dropped")
"""``frames.status``: ``ok`` scored (possibly with zero defects), ``failed`` unreadable or scoring error
(reason in ``frames.error``), ``dropped`` shed by the back-pressure policy before scoring."""

REVIEW_VERDICTS = ("confirmed", "rejected", "relabelled")
"""``reviews.verdict``: ``confirmed`` a real defect of the predicted class, ``rejected`` no real defect
(a false alarm: the retraining job uses the crop as background), ``relabelled`` a real defect of
``new_class``."""

RETRAIN_STATUSES = ("running", "promoted", "rejected", "failed")
"""``retrain_runs.status``: ``running`` until the job decides; ``promoted`` the challenger became active,
``rejected`` it did not pass the gates (reason in ``decision_reason``), ``failed`` the job crashed."""

ACTIVATION_KINDS = ("manual", "retrain", "daemon")
"""``model_activations.kind``: ``manual`` a person (``steel models activate``), ``retrain`` a retrain run's
promotion, ``daemon`` a daemon that found no active model and put its own on record."""

SNAPSHOT_ACTIONS = ("accept", "drop")
"""``retrain_snapshot_decisions.action``: ``accept`` a person lets a rejected run's snapshot be replayed,
``drop`` a person keeps a snapshot (promoted or not) out of every later training set."""

ALARM_STATUSES = ("pending", "sent", "acked", "failed")
"""``alarms.status``: ``pending`` raised but not yet delivered, ``sent`` delivered, ``acked`` acknowledged by
the receiver (PLC handshake), ``failed`` delivery failed (reason in ``alarms.error``)."""

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware UTC: the default of every ``*_at`` column the code fills in."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always hands back aware UTC datetimes on both backends.

    SQLite keeps no offset, so values are converted to UTC and stored naive; PostgreSQL gets aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# 64-bit ids where rows pile up; SQLite only makes ``INTEGER PRIMARY KEY`` an auto-incrementing rowid alias
# (its INTEGER is already 64-bit).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Line(Base):
    """A production line (one camera surface). ``name`` is the key the daemon's config uses."""

    __tablename__ = "lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # Encoder resolution: millimetres of strip per camera line, the line's default (the daemon's config
    # may override it; positions already stored in metres do not depend on it).
    mm_per_line: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    coils: Mapped[list[Coil]] = relationship(back_populates="line")


class Coil(Base):
    """One run of strip through a line (a coil), identified by its code on that line."""

    __tablename__ = "coils"
    __table_args__ = (UniqueConstraint("line_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    code: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    length_m: Mapped[float | None] = mapped_column(Float)  # total strip length once known
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    line: Mapped[Line] = relationship(back_populates="coils")


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


class Frame(Base):
    """One camera frame the daemon took in, whatever became of it.

    ``(source, seq)`` is the idempotency key: the daemon never stores a frame twice, across restarts,
    kill -9 and spool replays. ``source`` is the source URI (e.g. ``strip-sim:demo``), ``seq`` its frame
    number. ``start_line`` is the encoder count of the frame's first line and ``position_m`` the position of
    that line along the coil; ``length_m`` the strip length this frame newly covers (lines not shared with the
    previous frame), so ``SUM(length_m)`` is metres inspected. ``n_defects`` counts the defect rows stored
    with this frame. ``image_path`` is an annotated copy of the frame on disk when one was kept.
    """

    __tablename__ = "frames"
    __table_args__ = (
        UniqueConstraint("source", "seq"),
        CheckConstraint(_one_of("status", FRAME_STATUSES), name="status"),
        Index("ix_frames_processed_at", "processed_at"),
        Index("ix_frames_line_id_processed_at", "line_id", "processed_at"),
        Index("ix_frames_coil_id_position_m", "coil_id", "position_m"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(500))
    seq: Mapped[int] = mapped_column(BigInteger)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"))
    coil_id: Mapped[int | None] = mapped_column(ForeignKey("coils.id"))
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # from the camera, when it says
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # result ready
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)  # pixels across
    height: Mapped[int | None] = mapped_column(Integer)  # lines along
    start_line: Mapped[int | None] = mapped_column(BigInteger)
    position_m: Mapped[float | None] = mapped_column(Float)
    length_m: Mapped[float | None] = mapped_column(Float)
    image_path: Mapped[str | None] = mapped_column(Text)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    latency_ms: Mapped[float | None] = mapped_column(Float)  # capture (or arrival) to result
    n_defects: Mapped[int] = mapped_column(Integer, default=0)

    defects: Mapped[list[Defect]] = relationship(
        back_populates="frame", cascade="all, delete-orphan", passive_deletes=True
    )


class Defect(Base):
    """One physical defect, stored once even when overlapping frames both saw it (the tracker merges them).

    Belongs to the frame whose result stored it. ``line_id``/``coil_id`` repeat the frame's, so dashboard
    queries need no join. ``position_m`` is where the defect starts along the coil, ``cross_m`` where it
    starts across the strip (from the strip's edge as the camera sees it), ``length_m``/``width_m`` its size.
    ``track_id`` is the tracker's id (text, an int is stored as its decimal string); ``first_frame_seq`` and
    ``last_frame_seq`` the first and last frames of that source that saw it (a later frame that sees the
    track again moves ``last_frame_seq`` forward, in that frame's transaction). ``crop_path`` is the crop
    image on disk.
    ``created_at`` is the frame's ``processed_at`` unless the daemon says otherwise, so frame and defect
    counts over a time range agree.
    """

    __tablename__ = "defects"
    __table_args__ = (
        CheckConstraint("score >= 0 AND score <= 1", name="score_range"),
        Index("ix_defects_created_at", "created_at"),
        Index("ix_defects_class_name_created_at", "class_name", "created_at"),
        Index("ix_defects_coil_id_position_m", "coil_id", "position_m"),
        Index("ix_defects_line_id_created_at", "line_id", "created_at"),
        Index("ix_defects_frame_id", "frame_id"),
        Index("ix_defects_track_id", "track_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    frame_id: Mapped[int] = mapped_column(BigId, ForeignKey("frames.id", ondelete="CASCADE"))
    line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"))
    coil_id: Mapped[int | None] = mapped_column(ForeignKey("coils.id"))
    class_name: Mapped[str] = mapped_column(String(100))
    score: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    sx1: Mapped[float | None] = mapped_column(Float)
    sy1: Mapped[float | None] = mapped_column(Float)
    sx2: Mapped[float | None] = mapped_column(Float)
    sy2: Mapped[float | None] = mapped_column(Float)
    position_m: Mapped[float | None] = mapped_column(Float)
    cross_m: Mapped[float | None] = mapped_column(Float)
    length_m: Mapped[float | None] = mapped_column(Float)
    width_m: Mapped[float | None] = mapped_column(Float)
    track_id: Mapped[str | None] = mapped_column(String(64))
    first_frame_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_frame_seq: Mapped[int | None] = mapped_column(BigInteger)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    crop_path: Mapped[str | None] = mapped_column(Text)
    map_path: Mapped[str | None] = mapped_column(Text)  # ``anomaly`` defects: the anomaly map's heat-map crop
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    frame: Mapped[Frame] = relationship(back_populates="defects")
    reviews: Mapped[list[Review]] = relationship(
        back_populates="defect", cascade="all, delete-orphan", passive_deletes=True
    )


class Review(Base):
    """An operator's verdict on a defect; the defect row is never changed (it stays the model's output).

    ``old_class`` is the defect's class when reviewed, ``new_class`` the corrected class (required for
    ``relabelled``, empty otherwise). A defect may be reviewed more than once: the latest review wins.
    ``used_in_retrain_run_id`` is set when a retrain run consumed the review.
    """

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(_one_of("verdict", REVIEW_VERDICTS), name="verdict"),
        CheckConstraint("verdict <> 'relabelled' OR new_class IS NOT NULL", name="relabel_has_class"),
        Index("ix_reviews_defect_id", "defect_id"),
        Index("ix_reviews_reviewed_at", "reviewed_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    defect_id: Mapped[int] = mapped_column(BigId, ForeignKey("defects.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(100))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verdict: Mapped[str] = mapped_column(String(16))
    old_class: Mapped[str] = mapped_column(String(100))
    new_class: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    used_in_retrain_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("retrain_runs.id", ondelete="SET NULL")
    )

    defect: Mapped[Defect] = relationship(back_populates="reviews")


class RetrainRun(Base):
    """One run of the retraining job, with its champion/challenger decision.

    ``last_review_id`` is the high-water mark: the run consumed every review with ``id`` up to it (and above
    the previous finished run's mark), so a re-run never counts a review twice. ``summary`` holds the data
    added per class and the metrics before/after per class.
    """

    __tablename__ = "retrain_runs"
    __table_args__ = (CheckConstraint(_one_of("status", RETRAIN_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    champion_version: Mapped[str | None] = mapped_column(String(100))
    challenger_version: Mapped[str | None] = mapped_column(String(100))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_review_id: Mapped[int | None] = mapped_column(Integer)


class Alarm(Base):
    """A reject signal raised for a frame (and a defect when one is named) through a sink.

    ``sink`` is the output (``log``, ``webhook``, ``plc``...), ``kind`` what was signalled (e.g. ``reject``),
    ``payload`` what was sent. ``(frame_id, sink, kind, sent_at)`` is unique: the same alarm event replayed
    from the spool is stored once.
    """

    __tablename__ = "alarms"
    __table_args__ = (
        UniqueConstraint("frame_id", "sink", "kind", "sent_at"),
        CheckConstraint(_one_of("status", ALARM_STATUSES), name="status"),
        Index("ix_alarms_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    frame_id: Mapped[int] = mapped_column(BigId, ForeignKey("frames.id", ondelete="CASCADE"))
    defect_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("defects.id", ondelete="SET NULL"))
    sink: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="sent")
    error: Mapped[str | None] = mapped_column(Text)


class Gap(Base):
    """A stretch with no input from a source: a camera or stream that disconnected and came back, a source
    that gave up, or a jump of the line-scan encoder count (missing lines are never stitched over).

    ``first_missing_line``/``missing_lines`` are the first encoder count not received and how many were
    skipped (negative when the count went backwards), line-scan only. ``(source, started_at)`` is unique,
    so a gap replayed from the spool is stored once.
    """

    __tablename__ = "source_gaps"
    __table_args__ = (
        UniqueConstraint("source", "started_at"),
        Index("ix_source_gaps_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(500))
    line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)
    first_missing_line: Mapped[int | None] = mapped_column(BigInteger)
    missing_lines: Mapped[int | None] = mapped_column(BigInteger)


class ModelActivation(Base):
    """One activation of a model version, never updated: the audit trail behind ``model_versions.is_active``.

    ``previous_version`` is the version that was active just before (None: none was), ``actor`` who or what
    activated it (``cli:<user>``, ``retrain run 7``, ``daemon``), ``reason`` why, and ``forced`` whether a
    person overrode the gate's rejection of this version (``steel models activate --force``).
    """

    __tablename__ = "model_activations"
    __table_args__ = (
        CheckConstraint(_one_of("kind", ACTIVATION_KINDS), name="kind"),
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
        CheckConstraint(_one_of("action", SNAPSHOT_ACTIONS), name="action"),
        Index("ix_retrain_snapshot_decisions_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("retrain_runs.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str] = mapped_column(String(100))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text)


class CoilGrade(Base):
    """The grade of a closed coil under the plant's grading rules (``inspection.storage.grading``).

    One row per coil: grading again (new rules, a late defect) replaces it. ``grade`` is one of the rules'
    grades (e.g. ``A``/``B``/``scrap``); ``reasons`` the rules the coil broke, as sentences;
    ``rules_digest`` identifies the rules used (a coil graded under older rules can be found and
    regraded); ``defects`` and ``length_m`` the figures it was graded on.
    """

    __tablename__ = "coil_grades"
    __table_args__ = (Index("ix_coil_grades_graded_at", "graded_at"),)

    coil_id: Mapped[int] = mapped_column(ForeignKey("coils.id", ondelete="CASCADE"), primary_key=True)
    grade: Mapped[str] = mapped_column(String(32))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    rules_digest: Mapped[str] = mapped_column(String(64))
    defects: Mapped[int] = mapped_column(Integer, default=0)
    length_m: Mapped[float | None] = mapped_column(Float)
    graded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
