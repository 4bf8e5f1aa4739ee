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
    tracks: list[OpenTrack] = []
    for track_id, class_name, sx1, sy1, sx2, sy2, last_seq in rows:
        if sx1 is None or sy1 is None or sx2 is None or sy2 is None:
            continue  # a strip box is stored whole or not at all (the query already skips sx1 NULL)
        tracks.append(
            OpenTrack(str(track_id), class_name, (sx1, sy1, sx2, sy2), -1 if last_seq is None else last_seq)
        )
    return tracks
