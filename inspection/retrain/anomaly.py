"""The champion's anomaly model travels into the challenger's bundle, so a promotion never drops it.

It is carried, not refitted: the anomaly model keeps its own copy of the backbone stages it scores with,
so the challenger's new detector weights leave its memory and calibrated threshold valid (and refitting
would need clean tiles the retraining job does not have). A champion without one gives a challenger
without one, said in the log and the run's summary.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.anomaly.store import BUNDLE_SUBDIR, carry_anomaly

Log = Callable[[str], None]


def carry_champion_anomaly(champion: str | Path | None, challenger: Path, log: Log) -> dict[str, Any]:
    """Copy ``champion``'s ``anomaly/`` into the trained ``challenger`` bundle; what happened, for the
    run's summary and the challenger manifest's ``training.retrain.anomaly``."""
    if champion is None:
        shutil.rmtree(challenger / BUNDLE_SUBDIR, ignore_errors=True)  # never a stale copy (resumed run)
        log("WARNING: no champion bundle: the challenger has no anomaly model (run `steel calibrate`)")
        return {"carried": False, "reason": "no champion bundle"}
    model = carry_anomaly(champion, challenger)
    if model is None:
        log(f"WARNING: champion {champion} has no anomaly model: the challenger has none either")
        return {"carried": False, "reason": f"champion {champion} has no anomaly/ folder"}
    version = str(model.manifest["version"])
    log(f"anomaly model {version} carried from the champion (it holds its own backbone copy)")
    return {"carried": True, "model_version": version, "threshold": model.threshold, "from": str(champion)}
