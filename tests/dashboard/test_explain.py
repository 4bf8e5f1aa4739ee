"""The gallery's enlarged view explains a defect with the classical texture bundle (``explain_model``),
through ``AppTest`` on the seeded database; without the key nothing is shown, a broken bundle is a warning."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from datasets.texture.bundle import load_classic_bundle
from datasets.texture.explain import explain_crop
from tests.dashboard.conftest import APP, CROP_MARGIN

pytestmark = pytest.mark.usefixtures("clear_streamlit_caches")
BUNDLE = Path(__file__).resolve().parents[2] / "models" / "neu-classic"


def _app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, **config: object) -> AppTest:
    cfg = tmp_path / "dashboard.yaml"
    cfg.write_text(yaml.safe_dump({"db_url": url, "page_size": 4, **config}), encoding="utf-8")
    monkeypatch.setenv("STEEL_DASHBOARD_CONFIG", str(cfg))
    monkeypatch.delenv("STEEL_DASHBOARD_DB", raising=False)
    return AppTest.from_file(str(APP), default_timeout=90)


def _enlarge_first(at: AppTest, url: str) -> int:
    at.run()
    at.switch_page("views/gallery.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    with sqlite3.connect(make_url(url).database) as con:
        (defect_id,) = con.execute(
            "SELECT id FROM defects ORDER BY created_at DESC, id DESC LIMIT 1"
        ).fetchone()
    at.button(key=f"gallery_enlarge_{defect_id}").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return defect_id


def _expected(url: str, defect_id: int):
    """Explain the box cut from the stored crop by hand: the seed cut crops CROP_MARGIN px around the box."""
    with sqlite3.connect(make_url(url).database) as con:
        path, x1, y1, x2, y2 = con.execute(
            "SELECT crop_path, x1, y1, x2, y2 FROM defects WHERE id = ?", (defect_id,)
        ).fetchone()
    ox, oy = int(max(0, x1 - CROP_MARGIN)), int(max(0, y1 - CROP_MARGIN))
    with Image.open(path) as im:
        box = im.convert("L").crop((int(x1 - ox), int(y1 - oy), int(np.ceil(x2 - ox)), int(np.ceil(y2 - oy))))
    return explain_crop(np.asarray(box), load_classic_bundle(BUNDLE).model)


def _explanation_table(at: AppTest):
    tables = [d.value for d in at.dataframe if "feature_group" in d.value.columns]
    return tables[0] if tables else None


def test_enlarged_defect_shows_each_feature_groups_push(tmp_path, monkeypatch, seeded_url: str) -> None:
    at = _app(tmp_path, monkeypatch, seeded_url, explain_model=str(BUNDLE))
    defect_id = _enlarge_first(at, seeded_url)
    table = _explanation_table(at)
    assert table is not None, "no explanation table in the enlarged view"
    why = _expected(seeded_url, defect_id)
    column = f"push_to_{why.predicted}"
    assert list(table.columns) == ["feature_group", column]
    shown = dict(zip(table["feature_group"], table[column], strict=True))
    assert shown == pytest.approx({g: round(v, 3) for g, v in why.margin_by_group.items()}, abs=1e-3)
    assert any(f"**{why.predicted}**" in m.value for m in at.markdown)


def test_without_explain_model_the_enlarged_view_has_no_explanation(
    tmp_path, monkeypatch, seeded_url
) -> None:
    at = _app(tmp_path, monkeypatch, seeded_url)
    _enlarge_first(at, seeded_url)
    assert _explanation_table(at) is None
    assert len(at.get("image")) >= 5  # the dialog still draws the defect


def test_a_broken_bundle_is_a_warning_not_a_crash(tmp_path, monkeypatch, seeded_url: str) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({"format": "steel-classic-bundle/1"}))
    at = _app(tmp_path, monkeypatch, seeded_url, explain_model=str(broken))
    _enlarge_first(at, seeded_url)
    assert _explanation_table(at) is None
    assert any("No texture explanation" in w.value and "manifest.json" in w.value for w in at.warning)
