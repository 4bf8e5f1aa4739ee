"""The tables of what the daemon found and what people said about it: frames, their defects, the alarms
raised for them, gaps in a source's input, and operators' reviews of defects.

The high-volume, append-mostly tables (64-bit ids) that the daemon writes, the spool replays
idempotently and the dashboard reads; a review is kept beside its defect (they refer to each other).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from inspection.storage.schema.base import (
    ALARM_STATUSES,
    FRAME_STATUSES,
    REVIEW_VERDICTS,
    Base,
    BigId,
    UTCDateTime,
    one_of,
    utcnow,
)


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
        CheckConstraint(one_of("status", FRAME_STATUSES), name="status"),
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
    surface: Mapped[str | None] = mapped_column(String(8))  # "top"/"bottom" when the source says (0005)

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
        CheckConstraint(one_of("verdict", REVIEW_VERDICTS), name="verdict"),
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


class Alarm(Base):
    """A reject signal raised for a frame (and a defect when one is named) through a sink.

    ``sink`` is the output (``log``, ``webhook``, ``plc``...), ``kind`` what was signalled (e.g. ``reject``),
    ``payload`` what was sent. ``(frame_id, sink, kind, sent_at)`` is unique: the same alarm event replayed
    from the spool is stored once.
    """

    __tablename__ = "alarms"
    __table_args__ = (
        UniqueConstraint("frame_id", "sink", "kind", "sent_at"),
        CheckConstraint(one_of("status", ALARM_STATUSES), name="status"),
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
