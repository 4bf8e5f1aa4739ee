"""The one place the daemon writes SQL: frame results, lines and coils, the model registry, alarms, reviews.

Two layers with the same names:

* functions taking a ``Session`` as first argument do the work inside the caller's transaction and never
  commit, so several can be combined atomically (e.g. finish a retrain run and activate its model);
* ``Repository`` wraps an engine and runs each call in its own transaction (commit on success, rollback on
  any error), which is what the daemon, the dashboard's review page and the retraining job want.

``FrameRecord``, ``DefectRecord``, ``AlarmRecord`` and ``GapRecord`` are frozen dataclasses of plain values
(numpy scalars are converted on construction); the spool stores them too (``to_dict``/``from_dict``).
Supported backends: SQLite and PostgreSQL (idempotent inserts use ``INSERT ... ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import Field, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self

from sqlalchemy import Engine, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from inspection.storage.db import make_engine, session_factory
from inspection.storage.model_history import record_activation
from inspection.storage.schema import (
    ALARM_STATUSES,
    FRAME_STATUSES,
    RETRAIN_STATUSES,
    REVIEW_VERDICTS,
    Alarm,
    Coil,
    Defect,
    Frame,
    Gap,
    Line,
    ModelVersion,
    RetrainRun,
    Review,
    utcnow,
)

log = logging.getLogger(__name__)

_PG_ACTIVATION_LOCK = 0x5713E2  # pg_advisory_xact_lock key: one model activation at a time
Box = tuple[float, float, float, float]


def _box(value: Any) -> Box:
    x1, y1, x2, y2 = (float(v) for v in value)
    return (x1, y1, x2, y2)


# A record field's declared type (the annotation's text, ``from __future__ import annotations``) without
# its ``| None`` -> how to turn a value into that plain-Python type. Types not listed are kept as given.
_CONVERTERS: dict[str, Any] = {"str": str, "int": int, "float": float, "Box": _box, "dict[str, Any]": dict}


@functools.cache
def _field_converters(cls: type) -> tuple[tuple[str, Any], ...]:
    """``(field name, converter)`` for the fields of record class ``cls`` that have one; worked out once per
    class, since records are built for every defect of every frame."""
    pairs = ((f.name, _CONVERTERS.get(str(f.type).removesuffix(" | None"))) for f in fields(cls))
    return tuple((name, convert) for name, convert in pairs if convert is not None)


class _PlainRecord:
    """Base of the frozen record dataclasses: plain-value coercion and the spool's dict round trip.

    Coercion follows each field's annotation, so numpy scalars, numpy arrays for boxes and the like become
    plain Python on construction; ``_check`` is the subclass hook for cross-field rules.
    """

    __slots__ = ()
    # every subclass is a dataclass: this tells the type checker so (``fields()`` takes only dataclasses)
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def __post_init__(self) -> None:
        # widened to ``type``: mypy checks a class object against Hashable with the instance's __hash__
        record_type: type = type(self)
        for name, convert in _field_converters(record_type):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, convert(value))
        self._check()

    def _check(self) -> None:
        """Subclass hook after coercion: normalise, and raise ``ValueError`` for values wrong together."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601, boxes as lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of ``to_dict``; an unknown key is an error (a spool written by a newer version)."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        values = {
            k: datetime.fromisoformat(v) if k.endswith("_at") and isinstance(v, str) else v
            for k, v in data.items()
        }
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class DefectRecord(_PlainRecord):
    """One defect to store with its frame.

    ``xyxy`` is the box in frame pixels (0-based, x across, y along, x2/y2 exclusive); ``strip_xyxy`` the same
    box in strip pixels (x across, y in encoder lines from the coil start). ``position_m``/``cross_m`` where
    it starts along/across the strip, ``length_m``/``width_m`` its size. ``track_id`` is stored as text.
    ``created_at`` defaults to the frame's ``processed_at``.
    """

    class_name: str
    score: float
    xyxy: Box
    strip_xyxy: Box | None = None
    position_m: float | None = None
    cross_m: float | None = None
    length_m: float | None = None
    width_m: float | None = None
    track_id: str | None = None
    first_frame_seq: int | None = None
    last_frame_seq: int | None = None
    crop_path: str | None = None
    map_path: str | None = None  # ``anomaly`` defects: the heat-map crop of the anomaly map beside the crop
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRecord(_PlainRecord):
    """The result for one frame; ``(source, seq)`` is its idempotency key.

    ``line`` is a line name (``""`` means none) and ``coil`` a coil code on that line (both created on
    first use);
    ``model_version`` a registered bundle version (a placeholder row is made for an unknown one).
    ``start_line`` is the encoder count of the frame's first line, ``position_m`` that line's position
    along the coil, ``length_m`` the strip length newly covered by this frame (overlap excluded).
    """

    source: str
    seq: int
    status: str = "ok"
    processed_at: datetime = field(default_factory=utcnow)
    captured_at: datetime | None = None
    line: str | None = None
    coil: str | None = None
    error: str | None = None
    width: int | None = None
    height: int | None = None
    start_line: int | None = None
    position_m: float | None = None
    length_m: float | None = None
    image_path: str | None = None
    model_version: str | None = None
    latency_ms: float | None = None

    def _check(self) -> None:
        if self.line == "":
            object.__setattr__(self, "line", None)
        if self.status not in FRAME_STATUSES:
            raise ValueError(
                f"frame {self.source}#{self.seq}: status {self.status!r} is not one of {FRAME_STATUSES}"
            )
        if self.coil is not None and self.line is None:
            raise ValueError(f"frame {self.source}#{self.seq}: coil {self.coil!r} given without its line")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmRecord(_PlainRecord):
    """A reject signal raised for the stored frame ``(source, seq)``.

    ``track_id`` names the defect of that frame it was raised for, if any. ``(frame, sink, kind, sent_at)``
    is the idempotency key, so keep ``sent_at`` as it was when the signal went out.
    """

    source: str
    seq: int
    sink: str
    kind: str
    sent_at: datetime = field(default_factory=utcnow)
    status: str = "sent"
    payload: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    track_id: str | None = None

    def _check(self) -> None:
        if self.status not in ALARM_STATUSES:
            raise ValueError(f"alarm status {self.status!r} is not one of {ALARM_STATUSES}")


@dataclass(frozen=True, slots=True, kw_only=True)
class GapRecord(_PlainRecord):
    """A stretch with no input from ``source`` (see ``schema.Gap``); ``(source, started_at)`` is its key."""

    source: str
    started_at: datetime
    ended_at: datetime
    reason: str
    line: str | None = None
    first_missing_line: int | None = None
    missing_lines: int | None = None

    def _check(self) -> None:
        if self.line == "":
            object.__setattr__(self, "line", None)


# ---------------------------------------------------------------- session-level functions (no commit)


_KeyedRow = Line | Coil | ModelVersion | Frame | Alarm | Gap
"""The tables written with an idempotent insert (each has an integer ``id`` and a unique key)."""


def _insert_ignore(
    session: Session, entity: type[_KeyedRow], values: Mapping[str, Any], key: Sequence[str]
) -> int | None:
    """INSERT ... ON CONFLICT (key) DO NOTHING RETURNING id: the new id, or None when the key exists."""
    dialect = session.get_bind().dialect.name
    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        stmt = postgresql.insert(entity).values(**values).on_conflict_do_nothing(index_elements=list(key))
    elif dialect == "sqlite":
        stmt = sqlite.insert(entity).values(**values).on_conflict_do_nothing(index_elements=list(key))
    else:
        raise NotImplementedError(f"inspection storage supports SQLite and PostgreSQL, not {dialect}")
    return session.execute(stmt.returning(entity.id)).scalar_one_or_none()


def get_or_create_line(
    session: Session, name: str, *, description: str | None = None, mm_per_line: float | None = None
) -> int:
    """Id of the line ``name``, created with ``description``/``mm_per_line`` if new (else left as is)."""
    line_id = session.scalar(select(Line.id).where(Line.name == name))
    if line_id is None:
        values = {
            "name": name,
            "description": description,
            "mm_per_line": mm_per_line,
            "created_at": utcnow(),
        }
        line_id = _insert_ignore(session, Line, values, ["name"])
        if line_id is None:  # created concurrently
            line_id = session.execute(select(Line.id).where(Line.name == name)).scalar_one()
    return int(line_id)


def get_or_create_coil(session: Session, *, line: str, code: str, started_at: datetime | None = None) -> int:
    """Id of coil ``code`` on line ``line`` (both created if new; ``started_at`` only set on creation)."""
    return _coil_id(session, get_or_create_line(session, line), code, started_at)


def _coil_id(session: Session, line_id: int, code: str, started_at: datetime | None = None) -> int:
    where = (Coil.line_id == line_id, Coil.code == code)
    coil_id = session.scalar(select(Coil.id).where(*where))
    if coil_id is None:
        values = {"line_id": line_id, "code": code, "started_at": started_at, "created_at": utcnow()}
        coil_id = _insert_ignore(session, Coil, values, ["line_id", "code"])
        if coil_id is None:
            coil_id = session.execute(select(Coil.id).where(*where)).scalar_one()
    return int(coil_id)


def close_coil(
    session: Session, *, line: str, code: str, ended_at: datetime | None = None, length_m: float | None = None
) -> None:
    """Record the end of a coil (``ended_at`` defaults to now) and its total length when known."""
    coil_id = get_or_create_coil(session, line=line, code=code)
    values: dict[str, Any] = {"ended_at": ended_at or utcnow()}
    if length_m is not None:
        values["length_m"] = float(length_m)
    session.execute(update(Coil).where(Coil.id == coil_id).values(**values))


def _manifest_fields(manifest: Mapping[str, Any], path: str | Path | None) -> dict[str, Any]:
    version = str(manifest["version"])
    architecture = manifest.get("architecture") or {}
    return {
        "version": version,
        "name": str(manifest.get("name") or version),
        "path": None if path is None else str(path),
        "family": architecture.get("family") if isinstance(architecture, Mapping) else None,
        "class_names": [str(c) for c in manifest.get("class_names") or []],
        "metrics": dict(manifest.get("metrics") or {}),
        "manifest": json.loads(json.dumps(dict(manifest))),  # as the JSON column will hand it back
    }


def register_model_version(session: Session, manifest: Mapping[str, Any], path: str | Path | None) -> int:
    """Register a bundle by its manifest (``training.bundle`` format); returns its ``model_versions.id``.

    Idempotent by ``manifest["version"]``: registering the same manifest again returns the same id, and a
    placeholder row (made when a frame named the version first) is filled in. A *different* manifest under
    a version already registered is refused (ValueError): versions are the registry's key.
    """
    values = _manifest_fields(manifest, path)
    row = session.scalars(select(ModelVersion).where(ModelVersion.version == values["version"])).one_or_none()
    if row is None:
        new_id = _insert_ignore(session, ModelVersion, {**values, "created_at": utcnow()}, ["version"])
        if new_id is not None:
            return int(new_id)
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == values["version"])).one()
    if not row.manifest:  # placeholder
        for key, value in values.items():
            setattr(row, key, value)
        session.flush()
    elif row.manifest != values["manifest"]:
        raise ValueError(
            f"model version {values['version']!r} is already registered with a different manifest"
        )
    return int(row.id)


def _model_version_id(session: Session, version: str | None) -> int | None:
    if version is None:
        return None
    found = session.scalar(select(ModelVersion.id).where(ModelVersion.version == version))
    if found is not None:
        return int(found)
    log.warning("model version %r is not registered: storing a placeholder row", version)
    placeholder = {"version": version, "name": version, "class_names": [], "metrics": {}, "manifest": {}}
    new_id = _insert_ignore(session, ModelVersion, {**placeholder, "created_at": utcnow()}, ["version"])
    if new_id is None:  # registered concurrently
        new_id = session.execute(select(ModelVersion.id).where(ModelVersion.version == version)).scalar_one()
    return int(new_id)


def activate_model(
    session: Session,
    version: str,
    *,
    promoted_by: str | None = None,
    note: str | None = None,
    kind: str = "manual",
    forced: bool = False,
) -> ModelVersion:
    """Make ``version`` the one active model (LookupError if unknown); a no-op when it already is.

    Deactivates the others first, in the same transaction, so no reader ever sees two active models or,
    once committed, none; the partial unique index refuses a second active row whatever the code does.
    Every activation appends a row to the history (``model_activations``: who, why, from which version,
    ``kind`` manual/retrain/daemon, ``forced`` past a gate rejection), in the same transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_ACTIVATION_LOCK})
    target = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()
    if target is None:
        raise LookupError(f"model version {version!r} is not registered")
    if target.is_active:
        return target
    previous = session.scalar(select(ModelVersion.version).where(ModelVersion.is_active))
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.is_active, ModelVersion.id != target.id)
        .values(is_active=False)
    )
    target.is_active = True
    target.activated_at = utcnow()
    target.promoted_by = promoted_by
    target.note = note
    session.flush()
    record_activation(
        session,
        version=version,
        previous_version=previous,
        kind=kind,
        actor=promoted_by,
        reason=note,
        forced=forced,
    )
    return target


def active_model(session: Session) -> ModelVersion | None:
    """The active model version, or None when none has been activated."""
    return session.scalars(select(ModelVersion).where(ModelVersion.is_active)).one_or_none()


def record_frame(
    session: Session,
    frame: FrameRecord,
    defects: Sequence[DefectRecord] = (),
    *,
    seen_again: Sequence[str] = (),
) -> bool:
    """Insert a frame and its defects; False (and nothing written) when ``(source, seq)`` is already stored.

    ``seen_again`` are track ids of defects stored with earlier frames of the same source that this frame
    saw again: their ``last_frame_seq`` moves forward to ``frame.seq`` (never backwards). Call inside a
    transaction: the frame, its defects and these updates commit together or not at all.
    """
    line_id = get_or_create_line(session, frame.line) if frame.line is not None else None
    coil_id = (
        _coil_id(session, line_id, frame.coil) if frame.coil is not None and line_id is not None else None
    )
    model_id = _model_version_id(session, frame.model_version)
    values = {
        "source": frame.source,
        "seq": frame.seq,
        "line_id": line_id,
        "coil_id": coil_id,
        "captured_at": frame.captured_at,
        "processed_at": frame.processed_at,
        "status": frame.status,
        "error": frame.error,
        "width": frame.width,
        "height": frame.height,
        "start_line": frame.start_line,
        "position_m": frame.position_m,
        "length_m": frame.length_m,
        "image_path": frame.image_path,
        "model_version_id": model_id,
        "latency_ms": frame.latency_ms,
        "n_defects": len(defects),
    }
    frame_id = _insert_ignore(session, Frame, values, ["source", "seq"])
    if frame_id is None:
        return False
    if defects:
        rows = [
            _defect_row(
                d,
                frame_id=frame_id,
                line_id=line_id,
                coil_id=coil_id,
                model_id=model_id,
                default_created_at=frame.processed_at,
            )
            for d in defects
        ]
        # SQLAlchemy types a mapped class's __table__ as FromClause; for a declarative table it is a Table
        session.execute(Defect.__table__.insert(), rows)  # type: ignore[attr-defined]
    if seen_again:
        same_source = (
            select(Frame.id).where(Frame.id == Defect.frame_id, Frame.source == frame.source).exists()
        )
        session.execute(
            update(Defect)
            .where(
                Defect.track_id.in_([str(t) for t in seen_again]),
                same_source,
                or_(Defect.last_frame_seq.is_(None), Defect.last_frame_seq < frame.seq),
            )
            .values(last_frame_seq=frame.seq)
            .execution_options(synchronize_session=False)
        )
    return True


def _defect_row(
    d: DefectRecord,
    *,
    frame_id: int,
    line_id: int | None,
    coil_id: int | None,
    model_id: int | None,
    default_created_at: datetime,
) -> dict[str, Any]:
    sx1, sy1, sx2, sy2 = d.strip_xyxy if d.strip_xyxy is not None else (None, None, None, None)
    x1, y1, x2, y2 = d.xyxy
    return {
        "frame_id": frame_id,
        "line_id": line_id,
        "coil_id": coil_id,
        "class_name": d.class_name,
        "score": d.score,
        "x1": x1,
        "y1": y1,
        "x2": x2,
        "y2": y2,
        "sx1": sx1,
        "sy1": sy1,
        "sx2": sx2,
        "sy2": sy2,
        "position_m": d.position_m,
        "cross_m": d.cross_m,
        "length_m": d.length_m,
        "width_m": d.width_m,
        "track_id": d.track_id,
        "first_frame_seq": d.first_frame_seq,
        "last_frame_seq": d.last_frame_seq,
        "model_version_id": model_id,
        "crop_path": d.crop_path,
        "map_path": d.map_path,
        "created_at": d.created_at or default_created_at,
    }


def has_frame(session: Session, source: str, seq: int) -> bool:
    """Whether frame ``(source, seq)`` is stored (whatever its status)."""
    return session.scalar(select(Frame.id).where(Frame.source == source, Frame.seq == seq)) is not None


def processed_seqs(session: Session, source: str, *, min_seq: int | None = None) -> set[int]:
    """Sequence numbers of ``source`` already stored (from ``min_seq`` on, to bound the set on long runs)."""
    stmt = select(Frame.seq).where(Frame.source == source)
    if min_seq is not None:
        stmt = stmt.where(Frame.seq >= min_seq)
    return {int(s) for s in session.scalars(stmt)}


def max_seq(session: Session, source: str) -> int | None:
    """Highest stored sequence number of ``source``; None when it has no frames yet."""
    value = session.scalar(select(func.max(Frame.seq)).where(Frame.source == source))
    return None if value is None else int(value)


def record_alarm(session: Session, alarm: AlarmRecord) -> bool:
    """Store an alarm for its (already stored) frame; False when this alarm event is already stored.

    Raises LookupError when the frame ``(source, seq)`` is not in the database.
    """
    frame_id = session.scalar(select(Frame.id).where(Frame.source == alarm.source, Frame.seq == alarm.seq))
    if frame_id is None:
        raise LookupError(f"alarm for frame {alarm.source}#{alarm.seq}, which is not stored")
    defect_id = None
    if alarm.track_id is not None:
        defect_id = session.scalar(
            select(Defect.id).where(Defect.frame_id == frame_id, Defect.track_id == alarm.track_id).limit(1)
        )
    values = {
        "frame_id": frame_id,
        "defect_id": defect_id,
        "sink": alarm.sink,
        "kind": alarm.kind,
        "payload": alarm.payload,
        "sent_at": alarm.sent_at,
        "status": alarm.status,
        "error": alarm.error,
    }
    return _insert_ignore(session, Alarm, values, ["frame_id", "sink", "kind", "sent_at"]) is not None


def record_gap(session: Session, gap: GapRecord) -> bool:
    """Store a gap in a source's input; False when this gap (same source and start) is already stored."""
    line_id = get_or_create_line(session, gap.line) if gap.line is not None else None
    values = {
        "source": gap.source,
        "line_id": line_id,
        "started_at": gap.started_at,
        "ended_at": gap.ended_at,
        "reason": gap.reason,
        "first_missing_line": gap.first_missing_line,
        "missing_lines": gap.missing_lines,
    }
    return _insert_ignore(session, Gap, values, ["source", "started_at"]) is not None


def add_review(
    session: Session,
    defect_id: int,
    *,
    reviewer: str,
    verdict: str,
    new_class: str | None = None,
    note: str | None = None,
    reviewed_at: datetime | None = None,
) -> Review:
    """Store an operator's verdict on a defect; ``old_class`` is taken from the defect.

    ``relabelled`` needs a ``new_class`` different from the defect's class; ``confirmed`` and ``rejected``
    take none (confirming with the same class is accepted and stored without one). LookupError for an
    unknown defect, ValueError for an inconsistent verdict.
    """
    defect = session.get(Defect, defect_id)
    if defect is None:
        raise LookupError(f"defect {defect_id} does not exist")
    if not reviewer.strip():
        raise ValueError("a review needs the reviewer's name")
    if verdict not in REVIEW_VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {REVIEW_VERDICTS}")
    if new_class == defect.class_name and verdict == "confirmed":
        new_class = None
    if verdict == "relabelled" and (not new_class or new_class == defect.class_name):
        raise ValueError(f"relabelled needs a new class different from {defect.class_name!r}")
    if verdict != "relabelled" and new_class is not None:
        raise ValueError(f"verdict {verdict!r} takes no new class (got {new_class!r})")
    review = Review(
        defect_id=defect_id,
        reviewer=reviewer,
        reviewed_at=reviewed_at or utcnow(),
        verdict=verdict,
        old_class=defect.class_name,
        new_class=new_class,
        note=note,
    )
    session.add(review)
    session.flush()
    return review


def review_high_water(session: Session) -> int:
    """Highest review id consumed by a finished (promoted or rejected) retrain run; 0 when none."""
    stmt = select(func.max(RetrainRun.last_review_id)).where(RetrainRun.status.in_(("promoted", "rejected")))
    return int(session.scalar(stmt) or 0)


def start_retrain_run(session: Session, *, champion_version: str | None = None) -> RetrainRun:
    """Open a retrain run (status ``running``)."""
    run = RetrainRun(started_at=utcnow(), status="running", champion_version=champion_version, summary={})
    session.add(run)
    session.flush()
    return run


def finish_retrain_run(
    session: Session,
    run_id: int,
    *,
    status: str,
    decision_reason: str,
    challenger_version: str | None = None,
    summary: Mapping[str, Any] | None = None,
    last_review_id: int | None = None,
) -> RetrainRun:
    """Close a running retrain run with its decision.

    For ``promoted``/``rejected`` runs, reviews above the previous high-water mark up to ``last_review_id``
    are marked as used by this run, in the same transaction. ValueError if the run is not running anymore
    (a re-run must start a new run instead of finishing an old one twice).
    """
    if status not in RETRAIN_STATUSES or status == "running":
        raise ValueError(f"a retrain run finishes as one of {RETRAIN_STATUSES[1:]}, not {status!r}")
    run = session.get(RetrainRun, run_id)
    if run is None:
        raise LookupError(f"retrain run {run_id} does not exist")
    if run.status != "running":
        raise ValueError(f"retrain run {run_id} already finished as {run.status!r}")
    previous = review_high_water(session)
    run.status = status
    run.finished_at = utcnow()
    run.decision_reason = decision_reason
    run.challenger_version = challenger_version
    run.summary = dict(summary or {})
    run.last_review_id = last_review_id
    if status in ("promoted", "rejected") and last_review_id is not None:
        session.execute(
            update(Review)
            .where(Review.id > previous, Review.id <= last_review_id, Review.used_in_retrain_run_id.is_(None))
            .values(used_in_retrain_run_id=run.id)
        )
    session.flush()
    return run


# ---------------------------------------------------------------- one transaction per call


class Repository:
    """The storage API with one transaction per call, over an engine (or a URL it opens itself).

    On SQLite its transactions begin ``IMMEDIATE``: the writer takes the lock up front and waits on the busy
    timeout. Returned ORM rows are detached: read their columns, not their relationships.
    """

    def __init__(self, engine: Engine | str | URL) -> None:
        self._owns_engine = not isinstance(engine, Engine)
        self.engine: Engine = make_engine(engine) if not isinstance(engine, Engine) else engine
        self._sessions = session_factory(self.engine.execution_options(sqlite_begin="IMMEDIATE"))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close pooled connections (only when this repository opened the engine)."""
        if self._owns_engine:
            self.engine.dispose()

    def get_or_create_line(
        self, name: str, *, description: str | None = None, mm_per_line: float | None = None
    ) -> int:
        with self.transaction() as s:
            return get_or_create_line(s, name, description=description, mm_per_line=mm_per_line)

    def get_or_create_coil(self, *, line: str, code: str, started_at: datetime | None = None) -> int:
        with self.transaction() as s:
            return get_or_create_coil(s, line=line, code=code, started_at=started_at)

    def close_coil(
        self, *, line: str, code: str, ended_at: datetime | None = None, length_m: float | None = None
    ) -> None:
        with self.transaction() as s:
            close_coil(s, line=line, code=code, ended_at=ended_at, length_m=length_m)

    def register_model_version(self, manifest: Mapping[str, Any], path: str | Path | None) -> int:
        with self.transaction() as s:
            return register_model_version(s, manifest, path)

    def activate_model(
        self,
        version: str,
        *,
        promoted_by: str | None = None,
        note: str | None = None,
        kind: str = "manual",
        forced: bool = False,
    ) -> ModelVersion:
        with self.transaction() as s:
            return activate_model(s, version, promoted_by=promoted_by, note=note, kind=kind, forced=forced)

    def active_model(self) -> ModelVersion | None:
        with self.transaction() as s:
            return active_model(s)

    def record_frame(
        self, frame: FrameRecord, defects: Sequence[DefectRecord] = (), *, seen_again: Sequence[str] = ()
    ) -> bool:
        with self.transaction() as s:
            return record_frame(s, frame, defects, seen_again=seen_again)

    def has_frame(self, source: str, seq: int) -> bool:
        with self.transaction() as s:
            return has_frame(s, source, seq)

    def processed_seqs(self, source: str, *, min_seq: int | None = None) -> set[int]:
        with self.transaction() as s:
            return processed_seqs(s, source, min_seq=min_seq)

    def max_seq(self, source: str) -> int | None:
        with self.transaction() as s:
            return max_seq(s, source)

    def record_alarm(self, alarm: AlarmRecord) -> bool:
        with self.transaction() as s:
            return record_alarm(s, alarm)

    def record_gap(self, gap: GapRecord) -> bool:
        with self.transaction() as s:
            return record_gap(s, gap)

    def add_review(
        self,
        defect_id: int,
        *,
        reviewer: str,
        verdict: str,
        new_class: str | None = None,
        note: str | None = None,
        reviewed_at: datetime | None = None,
    ) -> Review:
        with self.transaction() as s:
            return add_review(
                s,
                defect_id,
                reviewer=reviewer,
                verdict=verdict,
                new_class=new_class,
                note=note,
                reviewed_at=reviewed_at,
            )

    def review_high_water(self) -> int:
        with self.transaction() as s:
            return review_high_water(s)

    def start_retrain_run(self, *, champion_version: str | None = None) -> RetrainRun:
        with self.transaction() as s:
            return start_retrain_run(s, champion_version=champion_version)

    def finish_retrain_run(
        self,
        run_id: int,
        *,
        status: str,
        decision_reason: str,
        challenger_version: str | None = None,
        summary: Mapping[str, Any] | None = None,
        last_review_id: int | None = None,
    ) -> RetrainRun:
        with self.transaction() as s:
            return finish_retrain_run(
                s,
                run_id,
                status=status,
                decision_reason=decision_reason,
                challenger_version=challenger_version,
                summary=summary,
                last_review_id=last_review_id,
            )
