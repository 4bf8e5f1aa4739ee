"""Fixtures the training tests share: clean NEU-DET canvases cut by the background rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets.background import BackgroundRule, select_clean_tiles, write_tiles
from datasets.model import ImageRecord
from datasets.readers import read_dataset
from training.background import load_canvases


@pytest.fixture(scope="session")
def clean_and_defects(neu_root, tmp_path_factory) -> tuple[list[np.ndarray], list[ImageRecord]]:
    """Clean canvases from every 12th inclusion/scratches image, and defect images the fit never saw."""
    aset = read_dataset(neu_root / "annotations")
    fit_names = [im.name for im in aset.images if im.name.startswith(("inclusion", "scratches"))][::12]
    out = tmp_path_factory.mktemp("clean")
    subset = aset.subset(fit_names)
    write_tiles(select_clean_tiles(subset, BackgroundRule()), subset, out)
    canvases = [c.image for c in load_canvases(out)]
    unseen = [im for im in aset.images if im.name not in set(fit_names)]
    defects = [
        next(im for im in unseen if im.name.startswith(c)) for c in ("inclusion", "scratches", "patches")
    ]
    return canvases, defects


@pytest.fixture
def one_thread():
    """Torch at one thread for the test (as the CI machine's budget assumes), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
