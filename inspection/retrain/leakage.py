"""Keeping the fixed evaluation set out of training, whatever way its pixels come back.

The fixed set is what every gate is scored on, so a challenger that trained on any of it is judged on its
own training data. Its images can come back three ways, and each has its own check:

* **as themselves** (a file in a base set or a snapshot): the content hash (``merge.build_training_set``);
* **inside a simulated strip** (``strip-sim:`` sources compose frames from dataset images): by provenance.
  The source URI stored with each frame rebuilds the same strip (it is seeded), which says which dataset
  images lie under a window; a window over any fixed-set image is refused;
* **re-encoded, resized or brightened** (a folder source replaying dataset files, a re-saved copy): a dHash
  candidate search confirmed by the images' fine-structure correlation (:mod:`datasets.dhash`), on the
  window and on the whole frame.

What no check here sees: a crop of a fixed-set image shifted against the window grid in a source that is not
a simulator (dHash does not survive crops). The README's retraining section says so.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from datasets.dhash import detail_signature, dhash_array, hamming, read_gray
from datasets.model import ImageRecord
from inspection.sources.strip_sim import StripSimulator

SIM_SCHEME = "strip-sim:"
MAX_DHASH_DISTANCE = 12  # candidate filter only: NEU textures put many unrelated images within 4 bits
MIN_CORRELATION = 0.9  # datasets.dhash: >= 0.9 for copies after re-encoding/resizing, <= 0.8 look-alikes


@dataclass(frozen=True)
class FixedSetGuard:
    """The fixed set's names, content hashes, dHashes and fine-structure signatures."""

    names: frozenset[str]
    sha256: frozenset[str]
    dhashes: tuple[tuple[str, int], ...]
    signatures: dict[str, np.ndarray]

    def near_duplicate(self, pixels: np.ndarray) -> str | None:
        """The fixed-set image ``pixels`` is a near-duplicate of, or None."""
        if pixels.size == 0:
            return None
        gray = pixels if pixels.ndim == 2 else pixels[..., 0]
        code = dhash_array(gray)
        candidates = [name for name, h in self.dhashes if hamming(code, h) <= MAX_DHASH_DISTANCE]
        if not candidates:
            return None
        signature = detail_signature(gray)
        for name in candidates:
            if float(signature @ self.signatures[name]) >= MIN_CORRELATION:
                return name
        return None

    def overlap(
        self, *, source: str, strip_window: tuple[int, int, int, int] | None, pixels: np.ndarray
    ) -> str | None:
        """Why a window may not be trained on (``fixed_set_provenance``, ``fixed_set_provenance_unknown``,
        ``fixed_set_near_duplicate``), or None when it is clear of the fixed set.

        ``strip_window`` is the window in strip pixels ``(x0, row0, x1, row1)`` for line-scan frames.
        """
        if source.startswith(SIM_SCHEME):
            under = strip_images_under(source, strip_window) if strip_window is not None else None
            if under is None:
                return "fixed_set_provenance_unknown"  # cannot tell which images it shows: refuse
            if self.names & set(under):
                return "fixed_set_provenance"
        if self.near_duplicate(pixels) is not None:
            return "fixed_set_near_duplicate"
        return None


def build_guard(fixed: Sequence[ImageRecord]) -> FixedSetGuard:
    """Hash every fixed-set image (about a millisecond each)."""
    dhashes: list[tuple[str, int]] = []
    signatures: dict[str, np.ndarray] = {}
    for record in fixed:
        if record.path is None:
            continue
        gray = read_gray(record.path)
        dhashes.append((record.name, dhash_array(gray)))
        signatures[record.name] = detail_signature(gray)
    return FixedSetGuard(
        names=frozenset(r.name for r in fixed),
        sha256=frozenset(r.sha256 for r in fixed if r.sha256),
        dhashes=tuple(dhashes),
        signatures=signatures,
    )


@functools.lru_cache(maxsize=16)
def _placements(source: str) -> tuple[tuple[str, int, int, int, int], ...] | None:
    """``(image, x0, line0, x1, line1)`` of every image of the strip a ``strip-sim:`` URI plays (lines are
    encoder counts, as ``frames.start_line``); None when the strip cannot be rebuilt."""
    try:
        sim = StripSimulator.from_spec(source[len(SIM_SCHEME) :])
    except (ValueError, OSError):
        return None
    ch, cw = sim.cell_hw
    first = sim.spec.first_line
    return tuple((p.image, p.x, p.y + first, p.x + cw, p.y + first + ch) for p in sim.placements())


def strip_images_under(source: str, window: tuple[int, int, int, int]) -> list[str] | None:
    """Dataset images of a simulated strip under ``window`` (``x0, line0, x1, line1`` in strip pixels and
    encoder lines); None when the URI does not rebuild a strip."""
    placements = _placements(source)
    if placements is None:
        return None
    x0, y0, x1, y1 = window
    return [name for name, a, b, c, d in placements if a < x1 and x0 < c and b < y1 and y0 < d]
