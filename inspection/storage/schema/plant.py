"""The plant's tables: production lines, the coils that run through them, and the grades of closed coils.

Few rows, created on first use (a line by the daemon's config, a coil by its source) and read by every
dashboard page that groups by line or coil. Nothing here points at the other topic modules.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
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
    Base,
    UTCDateTime,
    utcnow,
)


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
