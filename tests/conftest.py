"""Shared test fixtures: where the real data lives.

``neu_root`` is the NEU-DET development split (``datasets.settings.data_root()``, i.e. ``$STEEL_DATA``
or ``../shared/datasets/neu-det``); ``vott_examples`` the real and hand-made VoTT files beside it.
Tests that need them are skipped, with the path in the message, when they are absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets.settings import data_root


@pytest.fixture(scope="session")
def neu_root() -> Path:
    root = data_root()
    if not (root / "annotations").is_dir() or not (root / "images").is_dir():
        pytest.skip(f"NEU-DET development split not found at {root} (set STEEL_DATA to its folder)")
    return root


@pytest.fixture(scope="session")
def vott_examples() -> Path:
    folder = data_root().parent.parent / "fixtures" / "vott-examples"
    if not folder.is_dir():
        pytest.skip(f"VoTT example fixtures not found at {folder}")
    return folder
