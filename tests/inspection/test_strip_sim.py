"""The strip simulator: real NEU-DET images laid out as a strip, ground truth in strip coordinates,
played as a line-scan camera."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.detections import Detections
from datasets.model import NEU_DET_CLASSES
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT, ConfigError
from datasets.split import read_split
from inspection.messages import Frame, SourceGap
from inspection.sources import open_source
from inspection.sources.strip_sim import StripSimulator, StripSpec, parse_spec
from inspection.tiling import box_iou, merge_tile_detections, tile_grid

SPEC = "across=4,along=30,seed=0,frame_lines=600,overlap_lines=100,line_rate=0"


@pytest.fixture(scope="module")
def sim(neu_root: Path) -> StripSimulator:
    return StripSimulator.from_spec("across=4,along=6,seed=3,first_line=1000")


def source_pixels(neu_root: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(neu_root / "images" / name), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return image


def test_spec_string_sets_the_strip(neu_root: Path) -> None:
    sim = StripSimulator.from_spec(SPEC)
    assert sim.spec == StripSpec(across=4, along=30, seed=0, frame_lines=600, overlap_lines=100, line_rate=0)
    assert sim.strip_hw == (6000, 800)
    names = [p.image for p in sim.placements()]
    assert len(names) == 120 and len(set(names)) == 120  # drawn without replacement
    assert sim.placements()[:5] == [
        (names[0], 0, 0),
        (names[1], 200, 0),
        (names[2], 400, 0),
        (names[3], 600, 0),
        (names[4], 0, 200),
    ]
    assert sim.class_names == NEU_DET_CLASSES
    assert sim.position_m(2000) == pytest.approx(1.0)  # 0.5 mm per line


def test_the_choice_of_images_is_seeded(neu_root: Path) -> None:
    a = StripSimulator.from_spec("across=2,along=3,seed=7").placements()
    assert StripSimulator.from_spec("across=2,along=3,seed=7").placements() == a
    assert StripSimulator.from_spec("across=2,along=3,seed=8").placements() != a


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("across=4,width=3", "width: unknown key"),
        ("frame_lines=100,overlap_lines=100", "overlap_lines"),
        ("across=four", "across"),
        ("across=0", "is not >= 1"),
        ("across", "expected key=value"),
        ("seed=1,seed=2", "given twice"),
        ("split=test", "split"),
        ("across=100000,along=100000", "across: '100000' is not <= 64"),
        ("along=1000000000", "along"),
    ],
)
def test_bad_specs_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StripSimulator.from_spec(spec)


def test_parse_spec_allows_empty_and_spaces() -> None:
    assert parse_spec("") == {}
    assert parse_spec(" across = 2 , seed=1,") == {"across": "2", "seed": "1"}


def test_ground_truth_boxes_show_the_source_image_pixels(sim: StripSimulator, neu_root: Path) -> None:
    strip = sim.strip_image()
    assert strip.shape == sim.strip_hw == (1200, 800)
    truth = sim.ground_truth()
    by_name = {p.image: p for p in sim.placements()}
    records = read_dataset(neu_root / "annotations").by_name()
    assert len(truth) == sum(len(records[p.image].boxes) for p in sim.placements())
    for (x1, y1, x2, y2), label, name in truth:
        assert label in NEU_DET_CLASSES
        place = by_name[name]
        # strip y is in encoder lines: row = line - first_line
        rows = slice(int(y1) - 1000, int(y2) - 1000)
        crop = strip[rows, int(x1) : int(x2)]
        region = source_pixels(neu_root, name)[
            int(y1) - 1000 - place.y : int(y2) - 1000 - place.y, int(x1) - place.x : int(x2) - place.x
        ]
        assert crop.size > 0
        np.testing.assert_array_equal(crop, region)


def test_frames_are_overlapping_cuts_of_the_strip(sim: StripSimulator, neu_root: Path) -> None:
    strip = sim.strip_image()
    frames = list(sim)
    assert all(isinstance(f, Frame) for f in frames)
    assert [(f.start_line, f.height, f.meta["complete"]) for f in frames] == [
        (1000, 600, True),
        (1500, 600, True),
        (2000, 200, False),
    ]
    for frame in frames:
        np.testing.assert_array_equal(frame.image, strip[frame.start_line - 1000 : frame.end_line - 1000])
        assert frame.seq == frame.start_line and frame.coil == "sim-3" and frame.line_id == "sim"
    # a box no taller than the frame overlap lies whole in some frame, where it shows its source pixels
    by_name = {p.image: p for p in sim.placements()}
    short = [t for t in sim.ground_truth() if t.xyxy[3] - t.xyxy[1] <= sim.spec.overlap_lines]
    assert len(short) >= 5
    for (x1, y1, x2, y2), _, name in short:
        frame = next(f for f in frames if f.start_line <= y1 and y2 <= f.end_line)
        place = by_name[name]
        crop = frame.image[int(y1) - frame.start_line : int(y2) - frame.start_line, int(x1) : int(x2)]
        top, left = int(y1) - 1000 - place.y, int(x1) - place.x
        src = source_pixels(neu_root, name)[top : top + crop.shape[0], left : left + crop.shape[1]]
        np.testing.assert_array_equal(crop, src)


def test_open_source_plays_the_strip(neu_root: Path) -> None:
    uri = "strip-sim:across=2,along=4,seed=1,frame_lines=300,overlap_lines=50,block_lines=64"
    source = open_source(uri)
    frames = list(source)
    assert source.name == uri and {f.source for f in frames} == {uri}
    assert [f.start_line for f in frames] == [0, 250, 500]
    assert frames[0].image.shape == (300, 400)


def test_dropped_lines_become_an_encoder_gap(neu_root: Path) -> None:
    sim = StripSimulator.from_spec(
        "across=2,along=5,seed=0,frame_lines=300,overlap_lines=50", drop_lines=[(420, 30)]
    )
    events = list(sim)
    gaps = [e for e in events if isinstance(e, SourceGap)]
    assert len(gaps) == 1 and (gaps[0].first_missing_line, gaps[0].missing_lines) == (420, 30)
    frames = [e for e in events if isinstance(e, Frame)]
    assert [(f.start_line, f.height, f.meta["after_gap"]) for f in frames] == [
        (0, 300, False),
        (250, 170, False),
        (450, 300, True),
        (700, 300, False),
    ]
    for frame in frames:  # no frame stitches lines from both sides of the gap
        assert frame.end_line <= 420 or frame.start_line >= 450


def test_line_rate_paces_the_camera(neu_root: Path) -> None:
    delays = []
    sim = StripSimulator.from_spec(
        "across=1,along=2,line_rate=1,block_lines=100", wait=lambda s: delays.append(s) or True
    )
    assert list(sim) == []  # stopped during the first wait: nothing delivered early
    assert 99 < delays[0] <= 100  # the first block of 100 lines is due after 100 s at 1 line/s


def test_images_can_be_restricted_to_a_list_or_a_split(neu_root: Path) -> None:
    names = sorted(p.name for p in (neu_root / "images").glob("scratches_*.jpg"))[:10]
    sim = StripSimulator.from_spec("across=2,along=5", images=names)
    assert sorted(p.image for p in sim.placements()) == names
    val = set(read_split(REPO_ROOT / "configs/splits/neu-det-dev.json").val)
    sim = StripSimulator.from_spec("across=4,along=10,split=val")
    assert {p.image for p in sim.placements()} <= val
    with pytest.raises(ValueError, match="no images"):
        StripSimulator.from_spec("across=1,along=1", images=["not-there.jpg"])


def test_strip_ground_truth_survives_tiling_and_merging(neu_root: Path) -> None:
    """Frames of a real strip, tiled; a perfect per-tile detector; the merge gives back each box once."""
    sim = StripSimulator.from_spec("across=4,along=9,seed=5")
    class_id = {name: i for i, name in enumerate(sim.class_names)}
    tile_hw = (200, 200)
    compared = 0
    for frame in sim:
        grid = tile_grid(frame.image.shape, tile_hw, (40, 40))
        # boxes of this frame in frame pixels (clipped to it); overlapping same-class boxes (NEU has
        # some) are one defect to a merger, so keep only boxes at least 3 px from their class mates
        boxes = []
        for (x1, y1, x2, y2), label, _ in sim.ground_truth():
            y1, y2 = max(y1 - frame.start_line, 0), min(y2 - frame.start_line, frame.height)
            if y2 - y1 >= 1:
                boxes.append(((x1, y1, x2, y2), class_id[label]))
        separated = [
            (b, c)
            for b, c in boxes
            if all(
                o == b
                or c2 != c
                or b[0] >= o[2] + 3
                or o[0] >= b[2] + 3
                or b[1] >= o[3] + 3
                or o[1] >= b[3] + 3
                for o, c2 in boxes
            )
        ]
        per_tile = []
        for x, y in grid:
            clipped = [
                ((max(b[0], x) - x, max(b[1], y) - y, min(b[2], x + 200) - x, min(b[3], y + 200) - y), c)
                for b, c in separated
            ]
            clipped = [(b, c) for b, c in clipped if b[2] > b[0] and b[3] > b[1]]
            per_tile.append(
                Detections(
                    np.array([b for b, _ in clipped], np.float32).reshape(-1, 4),
                    np.full(len(clipped), 0.9),
                    [c for _, c in clipped],
                )
            )
        merged = merge_tile_detections(per_tile, grid, tile_hw, frame_hw=frame.image.shape)
        assert len(merged) == len(separated)
        if separated:
            expected = np.array([b for b, _ in separated], np.float32)
            iou = box_iou(merged.xyxy.astype(np.float64), expected.astype(np.float64))
            assert sorted(iou.argmax(axis=1).tolist()) == list(range(len(separated)))
            np.testing.assert_allclose(merged.xyxy, expected[iou.argmax(axis=1)], atol=1.0)
        compared += len(separated)
    assert compared > 30  # the test really exercised many real boxes
