"""Coils and the coil map against plain SQL."""

from __future__ import annotations

from dashboard import queries
from dashboard.filters import Filters
from tests.dashboard.conftest import Seed
from tests.dashboard.queries.sqlkit import sqlite_db


def test_coils_and_map(engine, seeded_url: str, seed: Seed) -> None:
    con = sqlite_db(seeded_url)
    coils = queries.list_coils(engine, Filters()).set_index("code")
    for code, coil_id in seed.coil_ids.items():
        n = con.execute("SELECT COUNT(*) FROM defects WHERE coil_id=?", (coil_id,)).fetchone()[0]
        frames = con.execute(
            "SELECT COUNT(*) FROM frames WHERE coil_id=? AND status='ok'", (coil_id,)
        ).fetchone()
        assert coils.loc[code, "defects"] == n
        assert coils.loc[code, "frames"] == frames[0]
    only_l1 = queries.list_coils(engine, Filters(line_ids=(seed.line_ids["L1"],)))
    assert set(only_l1["code"]) == {"C100", "C101"}

    coil = seed.coil_ids["C101"]
    f = Filters(min_score=0.5)
    points = queries.coil_defects(engine, f, coil)
    n = con.execute("SELECT COUNT(*) FROM defects WHERE coil_id=? AND score>=0.5", (coil,)).fetchone()[0]
    assert len(points) == n and queries.count_coil_defects(engine, f, coil) == (n, 0)
    assert list(points["position_m"]) == sorted(points["position_m"])
    # the coil filter of the sidebar does not hide the coil the map was asked for
    assert len(queries.coil_defects(engine, f.with_(coil_ids=(seed.coil_ids["C100"],)), coil)) == n
    grid = queries.coil_density(engine, f, coil, along_bin_m=10.0, across_bin_m=0.5)
    assert grid["defects"].sum() == n
    for row in grid.itertuples(index=False):
        inside = points[
            (points["position_m"] >= row.position_m)
            & (points["position_m"] < row.position_m + 10.0)
            & (points["cross_m"] >= row.cross_m)
            & (points["cross_m"] < row.cross_m + 0.5)
            & (points["class_name"] == row.class_name)
        ]
        assert len(inside) == row.defects
