"""``strip-sim:SPEC``: a long steel strip made of NEU-DET images, played as a line-scan camera.

The strip is a grid of images ``across`` wide and ``along`` long (200x200 NEU-DET images: ``across=4``
gives an 800 px wide web), chosen with a seeded generator (without replacement while the pool
allows). Coordinates: ``x`` runs across the web in pixels, ``y`` along the strip in encoder lines
(line = row + ``first_line``), so a ground-truth box and a frame box compare after adding the frame's
``start_line`` to the frame box's ``y``. The strip is composed one row of images at a time while it
plays, so a long strip costs no more memory than a short one.

Playing: rows go out in blocks of ``block_lines`` with their encoder count, paced at ``line_rate``
lines per second (0: as fast as the consumer takes them), through a
:class:`~inspection.sources.linescan.LineScanSource` that makes overlapping frames. ``drop_lines``
removes line ranges from what the "camera" delivers, to exercise encoder-gap handling.

SPEC is ``key=value`` pairs separated by commas, e.g.
``strip-sim:across=4,along=30,seed=0,frame_lines=600,overlap_lines=100,line_rate=0``; the keys are
the fields of :class:`StripSpec`. ``split`` picks the side of the project's split file
(``configs/splits/neu-det-dev.json``) the images come from: ``train`` by default, so the strip never shows
the validation side, which the retraining job keeps as its fixed evaluation set (windows reviewed on a
strip of validation images would carry fixed-set pixels into training); ``split=val`` to measure recall on
images no model was trained on (the retraining job refuses windows cut from such a strip); ``split=all``
for every image.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np
from pydantic import Field, model_validator

from datasets.model import AnnotatedSet, ImageRecord
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT, ConfigError, StrictModel, data_root, validate_config
from datasets.split import read_split
from inspection.constants import (
    DEFAULT_BLOCK_LINES,
    DEFAULT_FRAME_LINES,
    DEFAULT_FRAME_OVERLAP_LINES,
    DEFAULT_MM_PER_LINE,
    DEFAULT_SIM_ACROSS,
    DEFAULT_SIM_ALONG,
    DEFAULT_SPLIT_FILE,
)
from inspection.messages import SourceEvent, Surface
from inspection.sources.base import BaseSource
from inspection.sources.linescan import LineBlock, LineScanSource


class StripSpec(StrictModel):
    """What ``strip-sim:SPEC`` can set. Unknown keys are errors."""

    # Bounded: the retraining job rebuilds a strip from the source string stored in the database, so a
    # hostile row must not make it build 10^10 cells. 64 x 100,000 images is a 12.8 km test strip.
    across: int = Field(DEFAULT_SIM_ACROSS, ge=1, le=64, description="images across the web")
    along: int = Field(DEFAULT_SIM_ALONG, ge=1, le=100_000, description="images along the strip")
    seed: int = Field(0, description="seeds the choice of images")
    frame_lines: int = Field(DEFAULT_FRAME_LINES, ge=1, le=100_000)
    overlap_lines: int = Field(DEFAULT_FRAME_OVERLAP_LINES, ge=0)
    block_lines: int = Field(DEFAULT_BLOCK_LINES, ge=1, description="lines per block from the grabber")
    line_rate: float = Field(0.0, ge=0, description="lines per second; 0 = as fast as possible")
    mm_per_line: float = Field(DEFAULT_MM_PER_LINE, gt=0)
    first_line: int = Field(0, ge=0, description="encoder count of the strip's first line")
    split: Literal["train", "val", "all"] = Field(
        "train", description="images of this side of the split file (all: every image)"
    )
    coil: str | None = None
    line_id: str = "sim"
    surface: Surface | None = Field(None, description="the strip surface the simulated camera sees")

    @model_validator(mode="after")
    def _overlap_below_frame(self) -> StripSpec:
        if self.overlap_lines >= self.frame_lines:
            raise ValueError(
                f"overlap_lines ({self.overlap_lines}) must be < frame_lines ({self.frame_lines})"
            )
        return self


class Placement(NamedTuple):
    """One image of the strip: its name and its top-left corner (``x`` pixels, ``y`` strip row)."""

    image: str
    x: int
    y: int


class StripTruth(NamedTuple):
    """A ground-truth box in strip coordinates: ``xyxy`` (x in pixels, y in encoder lines)."""

    xyxy: tuple[float, float, float, float]
    label: str
    image: str


def parse_spec(spec: str) -> dict[str, str]:
    """``"a=1,b=x"`` -> ``{"a": "1", "b": "x"}`` (values typed later by :class:`StripSpec`)."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"strip-sim spec {spec!r}: expected key=value, got {item!r}")
        if key.strip() in out:
            raise ConfigError(f"strip-sim spec {spec!r}: {key.strip()!r} given twice")
        out[key.strip()] = value.strip()
    return out


@functools.lru_cache(maxsize=4)
def _read_annotations(path: str) -> AnnotatedSet:
    return read_dataset(path)


def _read_gray(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise ValueError(f"{path}: cannot decode image")
    return image


class StripSimulator(BaseSource):
    """A simulated strip and line-scan camera; iterate it for frames.

    Args:
        spec: the strip (see :class:`StripSpec`).
        images: only these image names; default every image with a file on the ``spec.split`` side.
        annotations: the annotation folder/file; default ``data_root() / "annotations"``.
        split_file: the split ``spec.split`` refers to; default ``configs/splits/neu-det-dev.json``.
        drop_lines: ``(first_row, count)`` ranges of strip rows the camera does not deliver.
        name: source name (``open_source`` passes the URI).
        stop, wait, now: see :class:`~inspection.sources.BaseSource`; ``wait`` paces ``line_rate``.
    """

    def __init__(
        self,
        spec: StripSpec | None = None,
        *,
        images: Sequence[str] | None = None,
        annotations: str | Path | None = None,
        split_file: str | Path | None = None,
        drop_lines: Sequence[tuple[int, int]] = (),
        name: str = "strip-sim",
        stop: threading.Event | None = None,
        wait: Callable[[float], bool] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(name, stop=stop, wait=wait, now=now)
        self.spec = spec or StripSpec()
        aset = _read_annotations(str(Path(annotations or data_root() / "annotations").resolve()))
        self.class_names: tuple[str, ...] = aset.class_names
        pool = [im for im in aset.images if im.path is not None]
        wanted: set[str] | None = set(images) if images is not None else None
        # An explicit image list is played as given unless split= is set too.
        if self.spec.split != "all" and (images is None or "split" in self.spec.model_fields_set):
            split = read_split(split_file or REPO_ROOT / DEFAULT_SPLIT_FILE)
            side = set(split.val if self.spec.split == "val" else split.train)
            wanted = side if wanted is None else wanted & side
        if wanted is not None:
            pool = [im for im in pool if im.name in wanted]
        if not pool:
            raise ValueError("strip-sim: no images to build a strip from (check images=/split=/annotations=)")
        pool.sort(key=lambda im: im.name)
        self._cells = self._choose(pool)
        self._cell_paths = [im.path for im in self._cells if im.path is not None]  # all: pool has paths
        self.cell_hw: tuple[int, int] = (self._cells[0].height, self._cells[0].width)
        odd = [im.name for im in self._cells if (im.height, im.width) != self.cell_hw]
        if odd:
            raise ValueError(f"strip-sim: images must share one size {self.cell_hw}, these do not: {odd[:5]}")
        self.drop_lines = tuple((int(a), int(n)) for a, n in drop_lines)
        self._band_cache: tuple[int, np.ndarray] | None = None

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> StripSimulator:
        """Build from a SPEC string; ``options`` may also set any :class:`StripSpec` field (they win)."""
        fields: dict[str, Any] = parse_spec(spec)
        for key in list(options):
            if key in StripSpec.model_fields:
                fields[key] = options.pop(key)
        return cls(validate_config(StripSpec, fields, source=f"strip-sim:{spec}"), **options)

    def _choose(self, pool: list[ImageRecord]) -> list[ImageRecord]:
        n = self.spec.across * self.spec.along
        rng = np.random.default_rng(self.spec.seed)
        picks = rng.choice(len(pool), size=n, replace=n > len(pool))
        return [pool[int(i)] for i in picks]

    # --- geometry and ground truth

    @property
    def strip_hw(self) -> tuple[int, int]:
        """``(rows, width)`` of the whole strip in pixels (rows = encoder lines)."""
        ch, cw = self.cell_hw
        return self.spec.along * ch, self.spec.across * cw

    @property
    def mm_per_line(self) -> float:
        return self.spec.mm_per_line

    def position_m(self, line: float) -> float:
        """Position along the strip in metres of encoder line ``line``."""
        return line * self.spec.mm_per_line / 1000.0

    def placements(self) -> list[Placement]:
        """Every image with its top-left corner in strip pixels (``y`` is a row, not a line)."""
        ch, cw = self.cell_hw
        across = self.spec.across
        return [Placement(im.name, (i % across) * cw, (i // across) * ch) for i, im in enumerate(self._cells)]

    def ground_truth(self) -> list[StripTruth]:
        """Every box of every placed image in strip coordinates (y in encoder lines), in strip order."""
        out: list[StripTruth] = []
        y0 = self.spec.first_line
        for im, place in zip(self._cells, self.placements(), strict=True):
            for box in im.boxes:
                xyxy = (box.x1 + place.x, box.y1 + place.y + y0, box.x2 + place.x, box.y2 + place.y + y0)
                out.append(StripTruth(xyxy, box.label, im.name))
        return out

    # --- pixels

    def _band(self, row: int) -> np.ndarray:
        """Image row ``row`` of the grid as ``(cell_h, strip_width)`` uint8."""
        if self._band_cache is None or self._band_cache[0] != row:
            across = self.spec.across
            paths = self._cell_paths[row * across : (row + 1) * across]
            self._band_cache = (row, np.hstack([_read_gray(path) for path in paths]))
        return self._band_cache[1]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Strip rows ``[start, stop)`` as ``(stop - start, width)`` uint8."""
        total, width = self.strip_hw
        if not 0 <= start <= stop <= total:
            raise ValueError(f"rows [{start}, {stop}) outside the strip's {total} rows")
        ch = self.cell_hw[0]
        parts = []
        row = start
        while row < stop:
            band, off = divmod(row, ch)
            end = min(stop, (band + 1) * ch)
            parts.append(self._band(band)[off : off + end - row])
            row = end
        return np.concatenate(parts) if parts else np.zeros((0, width), np.uint8)

    def strip_image(self) -> np.ndarray:
        """The whole strip ``(rows, width)`` uint8 (for tests and small strips)."""
        return self.rows(0, self.strip_hw[0])

    def _kept_ranges(self) -> list[tuple[int, int]]:
        total = self.strip_hw[0]
        keep = np.ones(total, dtype=bool)
        for first, count in self.drop_lines:
            keep[max(0, first) : max(0, first + count)] = False
        edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.view(np.int8), [0]])))
        return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]

    def blocks(self) -> Iterator[LineBlock]:
        """The camera's output: blocks of rows with encoder counts, paced at ``line_rate``."""
        spec = self.spec
        t0 = time.monotonic()
        for a, b in self._kept_ranges():
            for start in range(a, b, spec.block_lines):
                stop = min(b, start + spec.block_lines)
                if spec.line_rate > 0:
                    due = stop / spec.line_rate - (time.monotonic() - t0)
                    if due > 0 and self._wait(due):
                        return
                if self.stopped:
                    return
                yield LineBlock(self.rows(start, stop), spec.first_line + start, self._now())

    def __iter__(self) -> Iterator[SourceEvent]:
        spec = self.spec
        source = LineScanSource(
            self.blocks(),
            name=self.name,
            frame_lines=spec.frame_lines,
            overlap_lines=spec.overlap_lines,
            width=self.strip_hw[1],
            line_id=spec.line_id,
            coil=spec.coil or f"sim-{spec.seed}",
            surface=spec.surface,
            stop=self._stop,
            now=self._now,
        )
        yield from source
