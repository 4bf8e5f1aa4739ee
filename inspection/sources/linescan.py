"""Line-scan input: blocks of lines with encoder counts become overlapping frames.

A line-scan camera sees one row across the strip per encoder pulse; the frame grabber hands over
blocks of rows with the encoder count of the first row. :class:`LineScanAssembler` (pure, no clock,
no I/O) cuts the line stream into frames of ``frame_lines`` rows, consecutive frames sharing
``overlap_lines`` rows, so a defect on a frame border is seen whole in one of them. Frame ``k``
starts at line ``origin + k * (frame_lines - overlap_lines)``.

Encoder gaps. When a block does not start at the expected count, lines are missing (or the counter
went back). The lines are never stitched over the gap: the frame in progress is emitted short
(``complete=False``) if it holds lines not yet emitted, an :class:`EncoderGap` follows, and a new frame
grid starts at the block's count. :class:`LineScanSource` turns both into daemon messages: frames
with ``meta["complete"]`` / ``meta["after_gap"]`` and a :class:`~inspection.messages.SourceGap` with
the missing line range.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from inspection.messages import Frame, SourceEvent, SourceGap, Surface
from inspection.sources.base import BaseSource


@dataclass(frozen=True, slots=True)
class LineBlock:
    """Rows delivered together: ``lines`` ``(n, W)`` or ``(n, W, 3)`` uint8, row 0 at ``first_line``."""

    lines: np.ndarray
    first_line: int
    captured_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AssembledFrame:
    """``lines`` ``(h, W[, 3])``: row ``r`` is encoder line ``start_line + r``.

    ``complete`` is ``False`` for a frame cut short (``h < frame_lines``) by a gap or the stream's end.
    """

    start_line: int
    lines: np.ndarray
    complete: bool


@dataclass(frozen=True, slots=True)
class EncoderGap:
    """The stream expected line ``expected_line`` but the next block started at ``got_line``."""

    expected_line: int
    got_line: int

    @property
    def missing_lines(self) -> int:
        """Lines skipped; negative when the count went backwards."""
        return self.got_line - self.expected_line


class LineScanAssembler:
    """Cut a stream of line blocks into frames of ``frame_lines`` rows overlapping by ``overlap_lines``.

    Args:
        frame_lines: rows per frame (H).
        overlap_lines: rows shared by consecutive frames (O), ``0 <= O < H``.
        width: pixels per line (W); every block must have it.
    """

    def __init__(self, frame_lines: int, overlap_lines: int, width: int) -> None:
        if frame_lines < 1:
            raise ValueError(f"frame_lines must be >= 1, got {frame_lines}")
        if not 0 <= overlap_lines < frame_lines:
            raise ValueError(f"overlap_lines must be in [0, frame_lines={frame_lines}), got {overlap_lines}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.frame_lines = frame_lines
        self.overlap_lines = overlap_lines
        self.width = width
        self._reset()
        self._next: int | None = None  # encoder count the next block must start at
        self._pixel_shape: tuple[int, ...] | None = None  # (W,) or (W, 3), fixed by the first block

    @property
    def stride_lines(self) -> int:
        return self.frame_lines - self.overlap_lines

    def _reset(self) -> None:
        self._buf: np.ndarray | None = None  # rows not yet emitted as the start of a frame
        self._buf_start = 0  # encoder count of _buf[0]
        self._emitted_until: int | None = None  # one past the last line any emitted frame held

    def _check(self, block: np.ndarray) -> None:
        if not isinstance(block, np.ndarray) or block.ndim not in (2, 3) or block.shape[1] != self.width:
            raise ValueError(
                f"line block must be (n, {self.width}) or (n, {self.width}, 3), "
                f"got {getattr(block, 'shape', type(block))}"
            )
        if self._pixel_shape is None:
            self._pixel_shape = block.shape[1:]
        elif block.shape[1:] != self._pixel_shape:
            raise ValueError(f"line block rows are {block.shape[1:]}, earlier blocks {self._pixel_shape}")

    def push(self, block: np.ndarray, first_encoder_count: int) -> list[AssembledFrame | EncoderGap]:
        """Add ``block`` ``(n, W[, 3])`` whose row 0 is line ``first_encoder_count``.

        Returns:
            What the block completes, in stream order: at a gap the short frame before it (if it has
            new lines) and the :class:`EncoderGap`; then every full frame now available.
        """
        self._check(block)
        out: list[AssembledFrame | EncoderGap] = []
        first = int(first_encoder_count)
        if self._next is not None and first != self._next:
            out.extend(self.flush())
            out.append(EncoderGap(self._next, first))
        self._next = first + len(block)
        if len(block) == 0:
            return out
        if self._buf is None or len(self._buf) == 0:
            self._buf, self._buf_start = block, first
        else:
            self._buf = np.concatenate([self._buf, block])
        h, stride = self.frame_lines, self.stride_lines
        while len(self._buf) >= h:
            out.append(AssembledFrame(self._buf_start, self._buf[:h].copy(), True))
            self._emitted_until = self._buf_start + h
            self._buf = self._buf[stride:]
            self._buf_start += stride
        return out

    def flush(self) -> list[AssembledFrame]:
        """End of stream (or a gap): the frame in progress, short, if it holds lines not yet emitted."""
        buf, start, emitted = self._buf, self._buf_start, self._emitted_until
        self._reset()
        if buf is None or len(buf) == 0 or (emitted is not None and start + len(buf) <= emitted):
            return []
        return [AssembledFrame(start, buf.copy(), False)]


class LineScanSource(BaseSource):
    """Frames from line blocks (a frame grabber, the strip simulator, a GenICam line camera).

    ``seq`` is the frame's first encoder count plus an offset that grows whenever the count goes
    backwards, so seqs stay unique and increasing within the source (and equal ``start_line`` while
    the encoder only moves forward, which makes a replayed stream map onto the same database keys).
    ``captured_at`` is the time of the block that completed the frame.

    The camera layer may interleave its own events with the blocks (a disconnect's
    :class:`~inspection.messages.SourceGap`): the frame in progress is emitted short, the event is
    passed on, and a new frame grid starts with the next block. When the block iterator raises (a
    camera that gave up), the frame in progress is emitted before the exception propagates.

    Args:
        blocks: line blocks (and pass-through events), in arrival order.
        name: source name.
        frame_lines, overlap_lines: see :class:`LineScanAssembler`.
        width: pixels per line; ``None`` takes it from the first block.
        line_id, coil, surface: copied into every frame.
        stop, now: see :class:`~inspection.sources.BaseSource` (checked between blocks).
    """

    def __init__(
        self,
        blocks: Iterable[LineBlock | SourceEvent],
        *,
        name: str,
        frame_lines: int,
        overlap_lines: int,
        width: int | None = None,
        line_id: str = "",
        coil: str | None = None,
        surface: Surface | None = None,
        stop: threading.Event | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(name, stop=stop, now=now)
        self._blocks = blocks
        self.surface = surface
        self.frame_lines, self.overlap_lines = frame_lines, overlap_lines
        self.assembler = LineScanAssembler(frame_lines, overlap_lines, width) if width is not None else None
        if width is None:
            LineScanAssembler(
                frame_lines, overlap_lines, 1
            )  # validate the geometry now, not at the first block
        self.line_id = line_id
        self.coil = coil
        self._seq_offset = 0
        self._after_gap = False
        self._last_time: datetime | None = None

    def __iter__(self) -> Iterator[SourceEvent]:
        try:
            for block in self._blocks:
                if self.stopped:
                    return
                if not isinstance(block, LineBlock):
                    yield from self._flush()
                    yield block
                    self._after_gap = True
                    continue
                if self.assembler is None:
                    self.assembler = LineScanAssembler(
                        self.frame_lines, self.overlap_lines, block.lines.shape[1]
                    )
                at = block.captured_at or self._now()
                for item in self.assembler.push(block.lines, block.first_line):
                    if isinstance(item, EncoderGap):
                        yield self._gap(item, at)
                    else:
                        yield self._frame(item, at)
                self._last_time = at
        except Exception:
            yield from self._flush()
            raise
        yield from self._flush()

    def _flush(self) -> Iterator[Frame]:
        if self.assembler is not None:
            for item in self.assembler.flush():
                yield self._frame(item, self._last_time or self._now())

    def _gap(self, item: EncoderGap, at: datetime) -> SourceGap:
        if item.missing_lines < 0:
            self._seq_offset -= item.missing_lines
        kind = "lines missing" if item.missing_lines > 0 else "encoder went backwards"
        self._after_gap = True
        return SourceGap(
            self.name,
            self._last_time or at,
            at,
            f"encoder gap: expected line {item.expected_line}, got {item.got_line} "
            f"({abs(item.missing_lines)} {kind})",
            first_missing_line=item.expected_line,
            missing_lines=item.missing_lines,
        )

    def _frame(self, item: AssembledFrame, at: datetime) -> Frame:
        meta = {"complete": item.complete, "after_gap": self._after_gap}
        self._after_gap = False  # only the first frame after a gap carries the flag
        return Frame(
            self.name,
            item.start_line + self._seq_offset,
            item.lines,
            at,
            start_line=item.start_line,
            line_id=self.line_id,
            coil=self.coil,
            meta=meta,
            surface=self.surface,
        )
