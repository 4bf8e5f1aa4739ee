"""Scoring a bundle on labelled records exactly as ``steel eval`` does (Predictor + COCO evaluation), and
matching the same predictions once for the per-class operating points (:mod:`.operating`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from datasets.model import ImageRecord
from inspection.retrain.operating import Matched, match_predictions
from training.bundle import Bundle
from training.evaluation import Prediction, evaluate, ground_truth_from_records
from training.inference import Predictor, read_image


@dataclass(frozen=True)
class ModelOnSet:
    """One model on one labelled set: the ``steel eval --json`` summary and the matched predictions."""

    summary: dict[str, Any]
    matched: Matched


def score_bundle(
    bundle: Bundle, records: Sequence[ImageRecord], *, device: str = "auto", batch_size: int = 32
) -> ModelOnSet:
    """Run ``bundle`` once over ``records`` (boxes labelled with its classes): the COCO summary (P/R/F1
    and false alarms at the bundle's own score threshold) and the matches for any other threshold."""
    predictor = Predictor(bundle, device=device, score_threshold=0.0, batch_size=batch_size)
    preds: list[Prediction] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        for det in predictor([read_image(str(r.path)) for r in chunk]):
            preds.append(Prediction(det.xyxy, det.scores, det.class_ids))
    gts = ground_truth_from_records(records, bundle.class_names)
    result = evaluate(gts, preds, bundle.class_names, conf_threshold=bundle.score_threshold)
    return ModelOnSet(result.to_dict(), match_predictions(gts, preds, bundle.class_names))


def evaluate_bundle(
    bundle: Bundle, records: Sequence[ImageRecord], *, device: str = "auto", batch_size: int = 32
) -> dict[str, Any]:
    """``EvalResult.to_dict()`` of ``bundle`` on ``records``."""
    return score_bundle(bundle, records, device=device, batch_size=batch_size).summary


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers a retrain summary keeps of one evaluation: mAPs, false alarms and AP50 per class."""
    matrix = summary.get("confusion_matrix") or [[0]]
    return {
        "images": summary.get("images"),
        "map50": summary.get("map50"),
        "map50_95": summary.get("map50_95"),
        "false_alarms": int(sum(matrix[-1][:-1])),
        "per_class": {
            name: {"ap50": v.get("ap50"), "gt": v.get("gt")}
            for name, v in summary.get("per_class", {}).items()
        },
    }
