"""The tables of what the line produced and the daemon saw: lines, coils, frames, defects, the alarms raised
for them, gaps in a source's input, and the grades of closed coils.

These are the high-volume, append-mostly tables the daemon writes and the dashboard reads; the model
registry and the retraining loop's tables are in :mod:`.model_lifecycle`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    Base,
    BigId,
    UTCDateTime,
    one_of,
    utcnow,
)

if TYPE_CHECKING:  # relationships name their target by string at run time (no import cycle)
    from inspection.storage.schema.model_lifecycle import Review


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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    frame: Mapped[Frame] = relationship(back_populates="defects")
    reviews: Mapped[list[Review]] = relationship(
        back_populates="defect", cascade="all, delete-orphan", passive_deletes=True
    )


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
