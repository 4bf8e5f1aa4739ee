"""What a restarted daemon needs from the database to go on where it stopped: the defect tracks its last
stored frames left open (so the first frame after the restart, which overlaps them, does not store them
again)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspection.storage.schema import Defect, Frame


class OpenTrack(NamedTuple):
    """A defect track left open by a previous run (what ``Tracker.resume`` takes)."""

    track_id: str
    class_name: str
    strip_xyxy: tuple[float, float, float, float]
    last_seq: int  # -1 when unknown


def open_tracks(session: Session, source: str, *, frames: int = 2) -> list[OpenTrack]:
    """The defects with a strip position stored with the last ``frames`` frames of ``source``, by id."""
    last = select(Frame.id).where(Frame.source == source).order_by(Frame.seq.desc()).limit(frames)
    rows = session.execute(
        select(
            Defect.track_id,
            Defect.class_name,
            Defect.sx1,
            Defect.sy1,
            Defect.sx2,
            Defect.sy2,
            Defect.last_frame_seq,
        )
        .where(Defect.frame_id.in_(last.scalar_subquery()), Defect.sx1.is_not(None))
        .order_by(Defect.id)
    ).all()
    return [
        OpenTrack(str(r[0]), r[1], (r[2], r[3], r[4], r[5]), r[6] if r[6] is not None else -1) for r in rows
    ]
