"""What every table shares: the enumerations' values, naming convention, UTC times, 64-bit ids, ``Base``.

Kept apart from the tables so that the topic modules (:mod:`.plant`, :mod:`.results`,
:mod:`.model_lifecycle`) build on one declarative ``Base`` and one ``MetaData``, which Alembic and the
schema test compare as a whole.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Dialect, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase
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


def one_of(column: str, values: tuple[str, ...]) -> str:
    """CHECK constraint text: ``column`` holds one of ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """The declarative base of every table: ``Base.metadata`` is the whole schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
