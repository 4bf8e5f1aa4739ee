"""Why the classical model called a crop what it did: each feature group's share of the decision.

The model is linear, so the margin between the predicted class and the runner-up,
``logit[pred] - logit[second]``, is exactly the sum of one term per feature group plus the intercepts'
difference. A positive term pushed the decision towards the predicted class; a negative one against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.texture.features import extract
from datasets.texture.linear import LinearTextureModel
from datasets.texture.settings import FeatureGroup


@dataclass(frozen=True)
class Explanation:
    """The prediction for one crop and each group's push towards it (``margin_by_group`` sums, with
    ``margin_intercept``, to ``margin``)."""

    predicted: str
    runner_up: str
    scores: dict[str, float]
    margin: float
    margin_intercept: float
    margin_by_group: dict[FeatureGroup, float]
    logit_by_group: dict[FeatureGroup, float]


def explain_features(features: np.ndarray, model: LinearTextureModel) -> Explanation:
    """Explanation for one ``(F,)`` feature vector."""
    logits = model.logits(features)[0]
    order = np.argsort(-logits, kind="stable")
    best, second = int(order[0]), int(order[1])
    parts = model.group_contributions(features)
    scores = model.scores(features)[0]
    return Explanation(
        predicted=model.class_names[best],
        runner_up=model.class_names[second],
        scores={name: float(s) for name, s in zip(model.class_names, scores, strict=True)},
        margin=float(logits[best] - logits[second]),
        margin_intercept=float(model.intercept[best] - model.intercept[second]),
        margin_by_group={g: float(v[best] - v[second]) for g, v in parts.items()},
        logit_by_group={g: float(v[best]) for g, v in parts.items()},
    )


def explain_crop(image: np.ndarray, model: LinearTextureModel) -> Explanation:
    """Explanation for a uint8 crop, ``(H, W)`` gray or ``(H, W, 3)``, of any size."""
    return explain_features(extract(image, model.settings), model)
