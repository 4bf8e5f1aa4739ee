"""Model registry, usage and retraining decisions against plain SQL."""

from __future__ import annotations

from dashboard import queries
from dashboard.filters import Filters
from tests.dashboard.conftest import Seed
from tests.dashboard.queries.sqlkit import sqlite_db


def test_models_runs_and_usage(engine, seeded_url: str, seed: Seed) -> None:
    models = queries.list_model_versions(engine)
    assert list(models["version"]) == ["v2", "v1"]
    assert list(models["is_active"]) == [True, False]
    assert models.set_index("version").loc["v1", "metrics"]["per_class"] == {"crazing": 0.52}
    usage = queries.defects_by_model(engine, Filters()).set_index("model_version")
    con = sqlite_db(seeded_url)
    for version, mid in seed.model_ids.items():
        assert (
            usage.loc[version, "defects"]
            == con.execute("SELECT COUNT(*) FROM defects WHERE model_version_id=?", (mid,)).fetchone()[0]
        )
    runs = queries.list_retrain_runs(engine)
    assert list(runs["status"]) == ["promoted"] and runs["summary"][0] == {"added": {"crazing": 12}}
