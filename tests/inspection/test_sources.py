"""Sources: folders of real NEU-DET images, a real MJPG video, reconnects, GenICam, line-scan assembly."""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.messages import FailedFrame, Frame, SourceGap
from inspection.sources import MissingExtraError, SourceError, backoff_delay, open_source, split_uri
from inspection.sources.folder import FolderSource, folder_seq
from inspection.sources.genicam import MISSING_EXTRA_MESSAGE, GenICamSource
from inspection.sources.linescan import (
    AssembledFrame,
    EncoderGap,
    LineBlock,
    LineScanAssembler,
    LineScanSource,
)
from inspection.sources.video import VideoSource

NAMES = ["crazing_2.jpg", "inclusion_2.jpg", "patches_2.jpg", "pitted_surface_4.jpg", "scratches_2.jpg"]


def read_gray(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image


class FakeClock:
    """``now()`` advancing one second per call, from a fixed UTC time."""

    def __init__(self) -> None:
        self.t = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


class RecordingWait:
    """A ``wait`` that never sleeps: records the delays, runs a hook, stops after ``limit`` calls."""

    def __init__(self, hook=None, limit: int = 100) -> None:
        self.delays: list[float] = []
        self.hook = hook
        self.limit = limit

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        if self.hook is not None:
            self.hook(len(self.delays))
        return len(self.delays) >= self.limit


# --- URIs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("folder:/data/in", ("folder", "/data/in")),
        ("video:rtsp://cam.local:554/stream", ("video", "rtsp://cam.local:554/stream")),
        ("camera:0", ("camera", "0")),
        ("Strip-Sim:across=4", ("strip-sim", "across=4")),
        ("genicam:/opt/producer.cti", ("genicam", "/opt/producer.cti")),
    ],
)
def test_split_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_uri(uri) == expected


@pytest.mark.parametrize("uri", ["ftp://x", "/data/in", "folder:", "camera:front"])
def test_open_source_rejects_bad_uris(uri: str) -> None:
    with pytest.raises(ValueError):
        open_source(uri)


@pytest.mark.parametrize(
    ("failures", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 30.0), (50, 30.0)]
)
def test_backoff_doubles_up_to_the_cap(failures: int, expected: float) -> None:
    assert backoff_delay(failures, initial_s=0.5, max_s=30.0, factor=2.0) == expected


# --- folder --------------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path, neu_root: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(neu_root / "images" / name, folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".partial.jpg").write_bytes((neu_root / "images" / NAMES[0]).read_bytes()[:100])
    return folder


def test_folder_once_yields_every_image_in_name_order(image_folder: Path, neu_root: Path) -> None:
    source = open_source(f"folder:{image_folder}")
    frames = list(source)
    assert [f.meta["name"] for f in frames] == sorted(NAMES)
    assert all(isinstance(f, Frame) for f in frames)
    assert source.name == f"folder:{image_folder.resolve()}"
    for frame in frames:
        assert frame.seq == folder_seq(frame.meta["name"]) and 0 <= frame.seq < 2**63
        assert frame.image.shape == (200, 200) and not frame.image.flags.writeable
        np.testing.assert_array_equal(frame.image, read_gray(neu_root / "images" / frame.meta["name"]))
        mtime = (image_folder / frame.meta["name"]).stat().st_mtime
        assert frame.captured_at == datetime.fromtimestamp(mtime, UTC)
        assert frame.start_line is None


def test_folder_color_frames(image_folder: Path) -> None:
    frame = next(iter(FolderSource(image_folder, color="bgr")))
    assert frame.image.shape == (200, 200, 3)


def test_folder_seq_is_stable_and_unique_over_the_dataset(neu_root: Path) -> None:
    names = sorted(p.name for p in (neu_root / "images").iterdir())
    seqs = [folder_seq(n) for n in names]
    assert len(set(seqs)) == len(names)
    assert folder_seq("crazing_2.jpg") == folder_seq("crazing_2.jpg") != folder_seq("crazing_3.jpg")
    assert all(0 <= s < 2**63 for s in seqs)


@pytest.mark.parametrize("as_predicate", [False, True])
def test_folder_resumes_after_a_restart_without_repeating(image_folder: Path, as_predicate: bool) -> None:
    first_run = []
    for frame in FolderSource(image_folder):
        first_run.append(frame.seq)
        if len(first_run) == 2:
            break  # killed mid-way
    done = set(first_run)
    skip = (lambda seq: seq in done) if as_predicate else done
    second_run = [f.seq for f in FolderSource(image_folder, skip=skip)]
    assert not done & set(second_run)
    assert sorted(first_run + second_run) == sorted(folder_seq(n) for n in NAMES)


def test_folder_recursive_names_are_relative_paths(image_folder: Path) -> None:
    sub = image_folder / "line2"
    sub.mkdir()
    shutil.copy(image_folder / NAMES[0], sub / "a.jpg")
    assert "line2/a.jpg" not in [f.meta["name"] for f in FolderSource(image_folder)]
    names = [f.meta["name"] for f in FolderSource(image_folder, recursive=True)]
    assert names == sorted(NAMES + ["line2/a.jpg"])


def test_bad_files_become_failed_frames_and_the_source_goes_on(tmp_path: Path, neu_root: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    jpeg = (neu_root / "images" / NAMES[0]).read_bytes()
    png = cv2.imencode(".png", read_gray(neu_root / "images" / NAMES[1]))[1].tobytes()
    (folder / "a_good.jpg").write_bytes(jpeg)
    (folder / "b_empty.jpg").write_bytes(b"")
    (folder / "c_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "d_corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "e_truncated.png").write_bytes(png[: len(png) - 30])
    (folder / "f_small.png").write_bytes(cv2.imencode(".png", np.zeros((100, 120), np.uint8))[1].tobytes())
    (folder / "g_good.png").write_bytes(png)
    events = list(FolderSource(folder, expected_hw=(200, 200)))
    kinds = {e.meta["name"]: (type(e).__name__, getattr(e, "reason", "")) for e in events}
    assert kinds == {
        "a_good.jpg": ("Frame", ""),
        "b_empty.jpg": ("FailedFrame", "empty file"),
        "c_truncated.jpg": ("FailedFrame", "truncated JPEG (no end-of-image marker)"),
        "d_corrupt.jpg": ("FailedFrame", "cannot decode image (corrupt or unsupported)"),
        "e_truncated.png": ("FailedFrame", "truncated PNG (no IEND chunk)"),
        "f_small.png": ("FailedFrame", "wrong size: 100x120 px, expected 200x200"),
        "g_good.png": ("Frame", ""),
    }
    failed = [e for e in events if isinstance(e, FailedFrame)]
    assert all(e.seq == folder_seq(e.meta["name"]) for e in failed)


def test_follow_takes_new_files_once_they_stop_growing(image_folder: Path, neu_root: Path) -> None:
    data = (neu_root / "images" / "scratches_4.jpg").read_bytes()
    new = image_folder / "z_new.jpg"

    def arrive(call: int) -> None:
        if call == 1:
            new.write_bytes(data[:2000])  # a camera still writing the file
        elif call == 2:
            new.write_bytes(data)  # finished: same size at the next scan -> taken

    wait = RecordingWait(hook=arrive, limit=6)
    events = list(FolderSource(image_folder, follow=True, poll_s=0.25, wait=wait))
    names = [e.meta["name"] for e in events]
    assert names == sorted(NAMES) + ["z_new.jpg"]  # the existing files once, then the new one, once
    assert all(isinstance(e, Frame) for e in events)  # never read half-written
    np.testing.assert_array_equal(events[-1].image, read_gray(neu_root / "images" / "scratches_4.jpg"))
    assert wait.delays == [0.25] * 6


def test_folder_close_stops_a_following_source(image_folder: Path) -> None:
    source = FolderSource(image_folder, follow=True, poll_s=0.05)
    seen = []
    thread = threading.Thread(target=lambda: seen.extend(source))
    thread.start()
    while len(seen) < len(NAMES) and thread.is_alive():
        thread.join(0.05)
    source.close()
    thread.join(10)
    assert not thread.is_alive() and len(seen) == len(NAMES)


# --- video ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_file(tmp_path_factory: pytest.TempPathFactory, neu_root: Path) -> tuple[Path, list[np.ndarray]]:
    """A real MJPG .avi of 12 NEU-DET images and the images written."""
    names = sorted(p.name for p in (neu_root / "images").glob("*.jpg"))[::120][:12]
    images = [read_gray(neu_root / "images" / n) for n in names]
    path = tmp_path_factory.mktemp("video") / "strip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (200, 200))
    assert writer.isOpened()
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path, images


def test_video_file_yields_every_frame_then_ends(video_file: tuple[Path, list[np.ndarray]]) -> None:
    path, images = video_file
    source = open_source(f"video:{path}")
    frames = list(source)
    assert source.name == f"video:{path}"
    assert [f.seq for f in frames] == list(range(len(images)))
    for frame, image in zip(frames, images, strict=True):
        assert frame.image.shape == (200, 200) and frame.image.dtype == np.uint8
        assert np.abs(frame.image.astype(int) - image).mean() < 6  # MJPG is lossy, but it is this image
    assert [f.meta["frame_index"] for f in frames] == list(range(len(images)))
    assert frames[1].meta["pos_ms"] > frames[0].meta["pos_ms"]


def test_video_skips_frames_already_stored(video_file: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = video_file
    full = {f.seq: f.image for f in VideoSource(str(path))}
    resumed = list(VideoSource(str(path), skip=set(range(7))))
    assert [f.seq for f in resumed] == list(range(7, 12))
    for frame in resumed:
        np.testing.assert_array_equal(frame.image, full[frame.seq])


def test_a_missing_video_file_is_retried_until_it_appears(tmp_path: Path, video_file) -> None:
    path, images = video_file
    target = tmp_path / "late.avi"
    wait = RecordingWait(hook=lambda call: call == 2 and shutil.copy(path, target))
    events = list(VideoSource(str(target), wait=wait, now=FakeClock()))
    assert wait.delays == [0.5, 1.0]
    gap = events[0]
    assert isinstance(gap, SourceGap) and gap.reason == "opened after 2 failed attempt(s)"
    assert [type(e) for e in events[1:]] == [Frame] * len(images)


def test_a_video_source_gives_up_after_max_attempts(tmp_path: Path) -> None:
    wait = RecordingWait()
    events = []
    with pytest.raises(SourceError, match="gave up after 3 failed attempts"):
        for event in VideoSource(str(tmp_path / "never.avi"), max_attempts=3, wait=wait, now=FakeClock()):
            events.append(event)
    assert wait.delays == [0.5, 1.0]
    assert len(events) == 1 and isinstance(events[0], SourceGap) and "gave up" in events[0].reason


class FakeCapture:
    """A capture serving ``frames`` then failing reads; ``opened=False`` models a failed open."""

    def __init__(self, frames: list[np.ndarray], opened: bool = True) -> None:
        self.frames = list(frames)
        self.opened = opened
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def grab(self) -> bool:
        return bool(self.frames and self.frames.pop(0) is not None)

    def get(self, prop_id: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def test_a_live_stream_reconnects_with_backoff_and_records_the_gap(neu_root: Path) -> None:
    bgr = cv2.imread(str(neu_root / "images" / NAMES[0]), cv2.IMREAD_COLOR)
    script = [
        FakeCapture([bgr] * 3),
        FakeCapture([], opened=False),
        FakeCapture([], opened=False),
        FakeCapture([bgr] * 2),
    ]
    opened: list[object] = []

    def factory(target):
        opened.append(target)
        return script.pop(0) if script else FakeCapture([], opened=False)

    wait, clock = RecordingWait(), FakeClock()
    source = open_source(
        "camera:3", capture_factory=factory, max_attempts=4, max_backoff_s=1.5, wait=wait, now=clock
    )
    events = []
    with pytest.raises(SourceError):
        for event in source:
            events.append(event)
    assert opened[0] == 3 and source.name == "camera:3"
    assert [type(e).__name__ for e in events] == ["Frame"] * 3 + ["SourceGap"] + ["Frame"] * 2 + ["SourceGap"]
    gap = events[3]
    assert gap.reason == "reconnected after 3 failed attempt(s)"  # one failed read, two failed opens
    assert gap.started_at > events[2].captured_at and gap.ended_at == events[4].captured_at
    assert gap.duration_s > 0
    assert "gave up after 4" in events[-1].reason
    assert wait.delays == [0.5, 1.0, 1.5, 0.5, 1.0, 1.5]  # capped at max_backoff_s, reset by a frame
    frames = [e for e in events if isinstance(e, Frame)]
    assert all(f.image.shape == (200, 200) for f in frames)  # BGR converted to gray
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))  # time-based seqs: unique and increasing across reconnects


def test_closing_a_source_interrupts_its_backoff(tmp_path: Path) -> None:
    source = VideoSource(str(tmp_path / "never.avi"), initial_backoff_s=3600, max_attempts=None)
    thread = threading.Thread(target=lambda: list(source))
    thread.start()
    source.close()
    thread.join(10)
    assert not thread.is_alive()


# --- GenICam -------------------------------------------------------------------------------------


def test_genicam_without_harvesters_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "harvesters", None)  # import fails even where it is installed
    monkeypatch.setitem(sys.modules, "harvesters.core", None)
    with pytest.raises(MissingExtraError) as info:
        open_source("genicam:/opt/vendor/producer.cti")
    assert (
        str(info.value)
        == MISSING_EXTRA_MESSAGE
        == "genicam source needs the optional extra: pip install .[genicam]"
    )
    assert isinstance(info.value, ImportError)


class FakeBuffer:
    def __init__(self, data: np.ndarray, fmt: str) -> None:
        component = type("Component", (), {})()
        component.data, component.height, component.width, component.data_format = (
            data.ravel(),
            data.shape[0],
            data.shape[1],
            fmt,
        )
        self.payload = type("Payload", (), {"components": [component]})()

    def __enter__(self) -> FakeBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeHarvester:
    """Harvesters' surface used by the source: buffers from a script; ``None`` = a fetch timeout."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.files: list[str] = []

    def add_file(self, path: str) -> None:
        self.files.append(path)

    def update(self) -> None:
        pass

    def create(self, key):
        harvester = self

        class Acquirer:
            def start(self) -> None: ...
            def stop(self) -> None: ...
            def destroy(self) -> None: ...

            def fetch(self, timeout: float):
                item = harvester.script.pop(0) if harvester.script else None
                if item is None:
                    raise TimeoutError("fetch timed out")
                return item

        return Acquirer()

    def reset(self) -> None:
        pass


def test_genicam_frames_and_reconnect_with_a_fake_harvester(neu_root: Path) -> None:
    image = read_gray(neu_root / "images" / NAMES[2])
    mono12 = image.astype(np.uint16) << 4 | 7  # 12-bit camera: the top 8 bits are the image
    script = [FakeBuffer(mono12, "Mono12"), None, FakeBuffer(image, "Mono8"), FakeBuffer(image, "YUV422")]
    harvester = FakeHarvester(script)
    source = GenICamSource(
        "/opt/p.cti",
        harvester_factory=lambda: harvester,
        max_attempts=2,
        wait=RecordingWait(),
        now=FakeClock(),
    )
    events = []
    with pytest.raises(SourceError):
        for event in source:
            events.append(event)
    assert [type(e).__name__ for e in events] == ["Frame", "SourceGap", "Frame", "FailedFrame", "SourceGap"]
    np.testing.assert_array_equal(events[0].image, image)
    np.testing.assert_array_equal(events[2].image, image)
    assert "unsupported pixel format 'YUV422'" in events[3].reason
    assert harvester.files == ["/opt/p.cti"] * 3  # connected, reconnected after the timeout, once more


def test_genicam_line_scan_mode_assembles_frames(neu_root: Path) -> None:
    image = read_gray(neu_root / "images" / NAMES[3])
    script = [FakeBuffer(image[i : i + 50], "Mono8") for i in range(0, 200, 50)]
    source = GenICamSource(
        "/opt/p.cti",
        harvester_factory=lambda: FakeHarvester(script),
        frame_lines=120,
        overlap_lines=20,
        max_attempts=1,
        wait=RecordingWait(),
        now=FakeClock(),
    )
    events = []
    with pytest.raises(SourceError):
        for event in source:
            events.append(event)
    frames = [e for e in events if isinstance(e, Frame)]
    assert [(f.start_line, f.height) for f in frames] == [(0, 120), (100, 100)]
    np.testing.assert_array_equal(frames[1].image, image[100:200])


# --- line-scan assembly --------------------------------------------------------------------------


def lines(first: int, n: int, width: int = 5) -> np.ndarray:
    """Rows whose pixels hold their encoder count (mod 256), so a frame shows which lines it holds."""
    return np.repeat((np.arange(first, first + n) % 256).astype(np.uint8)[:, None], width, axis=1)


def run(assembler: LineScanAssembler, pushes: list[tuple[int, int]]) -> list[tuple]:
    """Push ``(first_line, n)`` blocks, flush, and describe the output as comparable tuples."""
    out: list[AssembledFrame | EncoderGap] = []
    for first, n in pushes:
        out.extend(assembler.push(lines(first, n, assembler.width), first))
    out.extend(assembler.flush())
    described = []
    for item in out:
        if isinstance(item, EncoderGap):
            described.append(("gap", item.expected_line, item.got_line))
        else:
            np.testing.assert_array_equal(
                item.lines, lines(item.start_line, len(item.lines), assembler.width)
            )
            described.append((item.start_line, len(item.lines), item.complete))
    return described


@pytest.mark.parametrize(
    ("frame_lines", "overlap", "pushes", "expected"),
    [
        # 12 lines in blocks of 3, frames of 4 overlapping by 1: starts every 3 lines, a short tail
        (4, 1, [(0, 3), (3, 3), (6, 3), (9, 3)], [(0, 4, True), (3, 4, True), (6, 4, True), (9, 3, False)]),
        # no overlap, exact fit: nothing left at the end
        (4, 0, [(0, 8)], [(0, 4, True), (4, 4, True)]),
        # the tail holds only lines already emitted: no extra frame
        (4, 2, [(0, 6)], [(0, 4, True), (2, 4, True)]),
        # one block holding several frames
        (3, 1, [(0, 10)], [(0, 3, True), (2, 3, True), (4, 3, True), (6, 3, True), (8, 2, False)]),
        # the encoder need not start at 0; one-line blocks
        (3, 1, [(1000 + i, 1) for i in range(5)], [(1000, 3, True), (1002, 3, True)]),
        # lines 5 and 6 missing: short frame before the gap, the gap, a new frame grid after it
        (
            4,
            1,
            [(0, 5), (7, 3), (10, 2)],
            [(0, 4, True), (3, 2, False), ("gap", 5, 7), (7, 4, True), (10, 2, False)],
        ),
        # a gap right after a frame whose tail was all emitted already
        (4, 2, [(0, 4), (10, 4)], [(0, 4, True), ("gap", 4, 10), (10, 4, True)]),
        # the counter going backwards (a reset) is a gap too, never stitched
        (4, 1, [(100, 4), (50, 4)], [(100, 4, True), ("gap", 104, 50), (50, 4, True)]),
        # nothing pushed, nothing out
        (4, 1, [], []),
        # an empty block changes nothing
        (4, 1, [(0, 2), (2, 0), (2, 2)], [(0, 4, True)]),
    ],
)
def test_line_scan_assembler_table(frame_lines: int, overlap: int, pushes: list, expected: list) -> None:
    assert run(LineScanAssembler(frame_lines, overlap, width=5), pushes) == expected


@pytest.mark.parametrize(("frame_lines", "overlap", "width"), [(0, 0, 5), (4, 4, 5), (4, -1, 5), (4, 1, 0)])
def test_line_scan_assembler_rejects_bad_geometry(frame_lines: int, overlap: int, width: int) -> None:
    with pytest.raises(ValueError):
        LineScanAssembler(frame_lines, overlap, width)


def test_line_scan_assembler_rejects_blocks_of_another_width_or_kind() -> None:
    assembler = LineScanAssembler(4, 1, width=5)
    with pytest.raises(ValueError, match=r"\(n, 5\)"):
        assembler.push(np.zeros((3, 6), np.uint8), 0)
    assembler.push(np.zeros((3, 5), np.uint8), 0)
    with pytest.raises(ValueError, match="earlier blocks"):
        assembler.push(np.zeros((3, 5, 3), np.uint8), 3)


def test_line_scan_source_reports_gaps_and_flags_frames() -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    at = [t0 + timedelta(seconds=s) for s in range(5)]
    blocks = [
        LineBlock(lines(0, 5), 0, at[0]),
        LineBlock(lines(7, 5), 7, at[1]),  # lines 5, 6 lost
        LineBlock(lines(2, 5), 2, at[2]),
    ]  # counter reset backwards
    events = list(
        LineScanSource(
            blocks, name="line-1", frame_lines=4, overlap_lines=1, width=5, line_id="L1", coil="C42"
        )
    )
    kinds = [(type(e).__name__, getattr(e, "start_line", None)) for e in events]
    assert kinds == [
        ("Frame", 0),
        ("Frame", 3),
        ("SourceGap", None),
        ("Frame", 7),
        ("Frame", 10),
        ("SourceGap", None),
        ("Frame", 2),
        ("Frame", 5),
    ]
    gap = events[2]
    assert (gap.first_missing_line, gap.missing_lines) == (5, 2)
    assert (gap.started_at, gap.ended_at) == (at[0], at[1]) and "2 lines missing" in gap.reason
    back = events[5]
    assert back.missing_lines == -10 and "backwards" in back.reason
    frames = [e for e in events if isinstance(e, Frame)]
    assert [f.meta["after_gap"] for f in frames] == [False, False, True, False, True, False]
    assert [f.meta["complete"] for f in frames] == [True, False, True, False, True, False]
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))  # unique although line 2..5 was seen twice
    assert seqs[:4] == [0, 3, 7, 10]  # equal to the encoder count while it only moves forward
    assert all(f.line_id == "L1" and f.coil == "C42" and f.source == "line-1" for f in frames)
    assert frames[0].captured_at == at[0] and frames[2].captured_at == at[1]


def test_line_scan_source_stops_when_closed() -> None:
    def endless() -> Iterator[LineBlock]:
        first = 0
        while True:
            yield LineBlock(lines(first, 10), first)
            first += 10

    source = LineScanSource(endless(), name="l", frame_lines=20, overlap_lines=5, width=5)
    taken = []
    for frame in source:
        taken.append(frame)
        if len(taken) == 3:
            source.close()
    assert len(taken) == 3


# --- messages ------------------------------------------------------------------------------------


def test_frames_are_validated_and_read_only(neu_root: Path) -> None:
    image = read_gray(neu_root / "images" / NAMES[0])
    at = datetime(2024, 5, 1, tzinfo=UTC)
    frame = Frame("folder:/x", 1, image, at, start_line=500)
    assert (frame.height, frame.width, frame.end_line) == (200, 200, 700)
    with pytest.raises(ValueError, match="read-only"):
        frame.image[0, 0] = 1
    brighter = frame.with_image(cv2.add(frame.image, 10), preprocessed=True)
    assert brighter.seq == 1 and brighter.meta == {"preprocessed": True} and frame.meta == {}
    with pytest.raises(ValueError, match="timezone-aware"):
        Frame("s", 1, image, datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="uint8"):
        Frame("s", 1, image.astype(np.float32), at)
    with pytest.raises(ValueError, match="non-empty"):
        Frame("s", 1, np.zeros((0, 5), np.uint8), at)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        Frame("s", 1, np.zeros((5, 5, 4), np.uint8), at)
    with pytest.raises(ValueError, match="timezone-aware"):
        SourceGap("s", at, datetime(2024, 5, 1), "x")
