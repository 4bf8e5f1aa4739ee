"""The inspection database: tables written by the daemon, read by the dashboard and the retraining job.

One import for the whole schema: the tables live by topic in :mod:`.plant` (lines, coils, coil grades),
:mod:`.results` (frames, defects, reviews, alarms, gaps) and :mod:`.model_lifecycle` (model versions and
activations, retrain runs, snapshot decisions) on the shared :mod:`.base`; importing this package
registers every table on ``Base.metadata``, which Alembic's ``env.py`` and the schema test compare with
the migrations. The topic modules never import each other (relationships stay within one module).

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

from inspection.storage.schema.base import (
    ACTIVATION_KINDS,
    ALARM_STATUSES,
    FRAME_STATUSES,
    NAMING_CONVENTION,
    RETRAIN_STATUSES,
    REVIEW_VERDICTS,
    SNAPSHOT_ACTIONS,
    Base,
    BigId,
    UTCDateTime,
    utcnow,
)
from inspection.storage.schema.model_lifecycle import (
    ModelActivation,
    ModelVersion,
    RetrainRun,
    SnapshotDecision,
)
from inspection.storage.schema.plant import Coil, CoilGrade, Line
from inspection.storage.schema.results import Alarm, Defect, Frame, Gap, Review

__all__ = [
    "ACTIVATION_KINDS",
    "ALARM_STATUSES",
    "FRAME_STATUSES",
    "NAMING_CONVENTION",
    "RETRAIN_STATUSES",
    "REVIEW_VERDICTS",
    "SNAPSHOT_ACTIONS",
    "Alarm",
    "Base",
    "BigId",
    "Coil",
    "CoilGrade",
    "Defect",
    "Frame",
    "Gap",
    "Line",
    "ModelActivation",
    "ModelVersion",
    "RetrainRun",
    "Review",
    "SnapshotDecision",
    "UTCDateTime",
    "utcnow",
]
