"""The reject/alarm interface: what a frame's result looks like to an output, and what an output must do.

The daemon judges each frame once with :func:`judge` (one reject rule for every output), builds one
:class:`RejectEvent` and hands it to every :class:`AlarmSink` that wants it (:func:`wants`). A sink either
delivers the event and says what became of it (``"sent"``; ``"acked"`` when the receiver confirmed, as a
PLC does; ``"skipped"`` when it chose not to publish), or raises :class:`AlarmError` with a reason the
daemon stores in the ``alarms`` table and counts. A sink never blocks the line for long: every sink bounds
its own wait (``timeout_s`` is the worst case).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from inspection.alarms.config import RejectRule

Verdict: TypeAlias = Literal["OK", "NG"]
Delivery: TypeAlias = Literal["sent", "acked", "skipped"]
"""What became of a delivered event: ``sent`` handed over, ``acked`` confirmed by the receiver (the alarm
statuses of the same names in the database), ``skipped`` deliberately not published (a PLC that does not
hold its Trigger: nothing to store, count it)."""

VERDICTS: tuple[Verdict, ...] = ("OK", "NG")


class AlarmError(Exception):
    """A sink could not deliver an event; ``reason`` is short, human-readable and goes into the database."""

    def __init__(self, reason: str, *, sink: str = "") -> None:
        super().__init__(f"{sink}: {reason}" if sink else reason)
        self.reason = reason
        self.sink = sink


@dataclass(frozen=True, slots=True)
class DefectSummary:
    """One defect as an output sees it (no pixels: outputs get positions on the strip, not boxes).

    Attributes:
        class_name: the model's class name.
        score: confidence in ``[0, 1]``.
        position_m: along the coil, from its head (``None`` when the source has no encoder).
        cross_m: across the web, from the strip's reference edge (``None`` when unknown).
        track_id: the tracker's id (the same physical defect seen in two overlapping frames has one).
        length_m: extent along the strip; ``None`` when unknown (a reject rule on length then treats the
            defect as long enough: an unknown length never hides a defect).
    """

    class_name: str
    score: float
    position_m: float | None = None
    cross_m: float | None = None
    track_id: str | None = None
    length_m: float | None = None

    def __post_init__(self) -> None:
        if not self.class_name:
            raise ValueError("DefectSummary.class_name must not be empty")
        if not (0.0 <= float(self.score) <= 1.0):
            raise ValueError(f"DefectSummary.score must be in [0, 1], got {self.score!r}")
        for name in ("position_m", "cross_m", "length_m"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"DefectSummary.{name} must be finite or None, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_name": self.class_name,
            "score": round(float(self.score), 6),
            "position_m": self.position_m,
            "cross_m": self.cross_m,
            "track_id": self.track_id,
            "length_m": self.length_m,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectEvent:
    """A frame's result, as sent to the outputs.

    Attributes:
        source, seq: the frame's idempotent key (``seq`` goes to a PLC as its low 16 bits).
        line, coil: where it was seen (``coil`` ``None`` when unknown).
        captured_at: timezone-aware capture time of the frame.
        verdict: ``"NG"`` when at least one defect matches the reject rule, else ``"OK"``.
        position_m: the frame's position along the coil (its first line), ``None`` without an encoder.
        defects: the defects that made the frame NG, highest score first; empty for an OK frame (every
            detection is in the database; an output only needs to know why it should reject).
        model_version: the model bundle that scored the frame.
    """

    source: str
    seq: int
    line: str
    coil: str | None
    captured_at: datetime
    verdict: Verdict
    position_m: float | None = None
    defects: tuple[DefectSummary, ...] = field(default_factory=tuple)
    model_version: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"RejectEvent.verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.captured_at.tzinfo is None or self.captured_at.utcoffset() is None:
            raise ValueError(f"RejectEvent.captured_at must be timezone-aware, got {self.captured_at!r}")
        object.__setattr__(self, "defects", tuple(self.defects))
        if self.verdict == "OK" and self.defects:
            raise ValueError("RejectEvent: an OK event carries no rejecting defects")

    @classmethod
    def judge(
        cls,
        *,
        source: str,
        seq: int,
        line: str,
        coil: str | None,
        captured_at: datetime,
        defects: Iterable[DefectSummary],
        rule: RejectRule,
        position_m: float | None = None,
        model_version: str = "",
        operating_point: Mapping[str, float] | None = None,
    ) -> RejectEvent:
        """The event for a frame with these (all of its) defects under ``rule`` (and the scoring model's
        ``operating_point`` where the rule leaves ``min_score`` unset)."""
        verdict, rejecting = judge(defects, rule, operating_point)
        return cls(
            source=source,
            seq=seq,
            line=line,
            coil=coil,
            captured_at=captured_at,
            verdict=verdict,
            position_m=position_m,
            defects=rejecting,
            model_version=model_version,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the log line, the webhook body and the ``alarms.payload`` column hold."""
        return {
            "source": self.source,
            "seq": self.seq,
            "line": self.line,
            "coil": self.coil,
            "captured_at": self.captured_at.isoformat(),
            "verdict": self.verdict,
            "position_m": self.position_m,
            "defect_count": len(self.defects),
            "defects": [d.to_dict() for d in self.defects],
            "model_version": self.model_version,
        }


def min_score_for(class_name: str, rule: RejectRule, operating_point: Mapping[str, float] | None) -> float:
    """The score from which a defect of ``class_name`` rejects: the rule's ``min_score`` when set (an
    explicit config value wins), else the model's operating point for the class, else 0 (no model point
    known: every reported detection counts, as the detector already applied its own threshold)."""
    if rule.min_score is not None:
        return rule.min_score
    if operating_point is None:
        return 0.0
    return float(operating_point.get(class_name, 0.0))


def rejecting(
    defects: Iterable[DefectSummary], rule: RejectRule, operating_point: Mapping[str, float] | None = None
) -> tuple[DefectSummary, ...]:
    """The defects that make a frame NG under ``rule``, highest score first (ties keep their order)."""
    allowed = None if rule.classes is None else set(rule.classes)
    hits = [
        d
        for d in defects
        if (allowed is None or d.class_name in allowed)
        and d.score >= min_score_for(d.class_name, rule, operating_point)
        and (rule.min_length_m is None or d.length_m is None or d.length_m >= rule.min_length_m)
    ]
    return tuple(sorted(hits, key=lambda d: -d.score))


def judge(
    defects: Iterable[DefectSummary], rule: RejectRule, operating_point: Mapping[str, float] | None = None
) -> tuple[Verdict, tuple[DefectSummary, ...]]:
    """``(verdict, rejecting defects)`` of a frame: NG as soon as one defect matches the rule."""
    hits = rejecting(defects, rule, operating_point)
    return ("NG" if hits else "OK"), hits


def decide(
    defects: Iterable[DefectSummary], rule: RejectRule, operating_point: Mapping[str, float] | None = None
) -> Verdict:
    """The frame's verdict under ``rule``: ``"NG"`` when any defect matches it, else ``"OK"``.

    Zero defects is OK (defect-free steel).
    """
    return judge(defects, rule, operating_point)[0]


@runtime_checkable
class AlarmSink(Protocol):
    """An output for frame results (log, webhook, PLC...).

    ``notify`` is called from one thread (the daemon's sink stage), one event at a time, and returns
    within about ``timeout_s`` seconds whatever the receiver does.

    Attributes:
        name: unique among the daemon's sinks; the ``alarms.sink`` column and the metrics label.
        notify_ok: whether the sink wants OK frames too (a PLC wants every frame's verdict; a webhook
            usually only NG).
        timeout_s: the longest one ``notify`` may take (the watchdog's budget for the sink stage).
    """

    name: str
    notify_ok: bool

    @property
    def timeout_s(self) -> float:  # read-only: a sink may work it out from its config
        ...

    def notify(self, event: RejectEvent) -> Delivery:
        """Deliver ``event``; raise :class:`AlarmError` with the reason when it cannot be delivered."""
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...


def wants(sink: AlarmSink, event: RejectEvent) -> bool:
    """Whether the daemon should hand ``event`` to ``sink`` (NG always, OK only when it asks for it)."""
    return event.verdict == "NG" or sink.notify_ok
