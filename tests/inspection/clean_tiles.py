"""Real clean tiles for anomaly tests: the background rule run over a few NEU-DET images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.background import BackgroundRule, select_clean_tiles, write_tiles
from datasets.readers import read_dataset
from training.background import load_canvases


def clean_canvases(
    neu_root: Path, prefixes: tuple[str, ...], out_dir: Path, every: int = 12
) -> list[np.ndarray]:
    """The clean canvases cut from every ``every``-th image whose name starts with one of ``prefixes``."""
    aset = read_dataset(neu_root / "annotations")
    subset = aset.subset([im.name for im in aset.images if im.name.startswith(prefixes)][::every])
    write_tiles(select_clean_tiles(subset, BackgroundRule()), subset, out_dir)
    return [c.image for c in load_canvases(out_dir)]
