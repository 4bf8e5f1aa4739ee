"""The plain records the daemon hands to storage: a frame result, its defects, an alarm, a gap in a source.

They are frozen dataclasses of plain values, separate from the ORM rows, because they travel further than
the database: the sink builds them in the daemon's threads, the spool writes them to disk while the
database is away (``to_dict``/``from_dict``) and replays them later. Numpy scalars and arrays are turned
into plain Python on construction, so a record always serialises the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, Self

from inspection.storage.schema import ALARM_STATUSES, FRAME_STATUSES, utcnow

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
    surface: str | None = None  # "top"/"bottom": the strip surface, when the source says

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
