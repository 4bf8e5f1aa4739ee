"""The training config's ``data.classes`` makes a typo label in the annotations a named error."""

from __future__ import annotations

import json

import pytest

from training.config import DataConfig
from training.data import prepare_data


def test_a_typo_label_stops_training_data_naming_file_asset_and_label(neu_root, tmp_path):
    data = json.loads((neu_root / "vott" / "NEU-DET-steel-export.json").read_text())
    asset_id, entry = next(iter(data["assets"].items()))
    entry["regions"][0]["tags"] = ["crazng"]
    data["tags"].append({"name": "crazng", "color": "#000000"})  # VoTT adds a typed tag to the project
    path = tmp_path / "typo-export.json"
    path.write_text(json.dumps(data))
    cfg = DataConfig(path=str(path), images=str(neu_root / "images"))  # data.classes: NEU-DET's six
    with pytest.raises(ValueError, match="1 annotation errors") as info:
        prepare_data(cfg, out_dir=None, write=False)
    assert f"{path} [{asset_id} (crazing_1.jpg)] regions[0].tags[0]: unknown tag 'crazng'" in str(info.value)
