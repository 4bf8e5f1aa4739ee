"""The source stage on its own: a real folder of NEU-DET images read into a queue, frames the database
already holds skipped, a source that gives up ending the stream with what it read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from inspection.messages import Frame, SourceEvent
from inspection.queues import BoundedQueue
from inspection.sources.folder import FolderSource, folder_seq
from inspection.stages.source import SourceStage
from tests.inspection.stages.conftest import drain, neu_frame, neu_image

NAMES = ("a.png", "b.png", "c.png")


def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, name in enumerate(NAMES):
        assert cv2.imwrite(str(folder / name), neu_image(i))
    return folder


def source_stage(source: FolderSource | BrokenCamera, skip: set[int] | None = None) -> SourceStage:
    skipped = skip or set()
    return SourceStage(
        source,
        BoundedQueue("preprocess", 16),
        skip=lambda seq: seq in skipped,
        stop=threading.Event(),
        abort=threading.Event(),
    )


class BrokenCamera:
    """A camera that delivers one frame, then fails (the cable is pulled)."""

    name = "camera:broken"

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[SourceEvent]:
        yield neu_frame(0, source=self.name)
        raise OSError("camera link lost")

    def close(self) -> None:
        self.closed = True


def test_every_image_of_a_folder_becomes_a_frame_and_the_stream_ends(tmp_path: Path) -> None:
    source = FolderSource(image_folder(tmp_path))
    stage = source_stage(source)
    stage.run()
    frames = drain(stage.outbox)
    assert [f.meta["name"] for f in frames if isinstance(f, Frame)] == list(NAMES)
    for i, frame in enumerate(frames):
        assert isinstance(frame, Frame)
        assert frame.seq == folder_seq(NAMES[i]) and np.array_equal(frame.image, neu_image(i))
    assert stage.read == 3 and stage.error is None and source.stopped


def test_frames_the_database_already_holds_are_not_read_again(tmp_path: Path) -> None:
    stage = source_stage(FolderSource(image_folder(tmp_path)), skip={folder_seq("b.png")})
    stage.run()
    assert [f.meta["name"] for f in drain(stage.outbox) if isinstance(f, Frame)] == ["a.png", "c.png"]
    assert stage.read == 2


def test_a_source_that_gives_up_ends_the_stream_and_keeps_what_it_read() -> None:
    camera = BrokenCamera()
    stage = source_stage(camera)
    stage.run()
    frames = drain(stage.outbox)
    assert [(f.source, f.seq) for f in frames if isinstance(f, Frame)] == [("camera:broken", 0)]
    assert isinstance(stage.error, OSError) and "camera link lost" in str(stage.error)
    assert camera.closed


def test_a_stopped_stage_passes_nothing_on_but_still_ends_the_stream(tmp_path: Path) -> None:
    stage = source_stage(FolderSource(image_folder(tmp_path)))
    stage.stop.set()
    stage.run()
    assert drain(stage.outbox) == [] and stage.read == 0
