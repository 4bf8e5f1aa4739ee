"""The engine of a private copy of the seeded database, for the query tests."""

from __future__ import annotations

import pytest

from inspection.storage.db import make_engine


@pytest.fixture
def engine(seeded_url: str):
    eng = make_engine(seeded_url)
    yield eng
    eng.dispose()
