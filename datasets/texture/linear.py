"""The classical model at prediction time: a standard scaler and a linear classifier, in NumPy only.

``logits = ((x - mean) / scale) @ coef.T + intercept``. Being linear, each logit splits exactly into one
sum per feature group plus the intercept, which is what the explanation view shows. Binary models are
stored with two rows (``[0, w]``, ``[0, b]``) so every task reads the same way; the softmax of those two
logits is scikit-learn's logistic probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from datasets.texture.settings import FeatureGroup, FeatureSettings

ClassifierKind = Literal["logistic-regression", "linear-svm"]


@dataclass(frozen=True)
class LinearTextureModel:
    """Scaler statistics ``mean``/``scale`` ``(F,)``, ``coef`` ``(C, F)``, ``intercept`` ``(C,)``."""

    settings: FeatureSettings
    class_names: tuple[str, ...]
    kind: ClassifierKind
    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]
    intercept: npt.NDArray[np.float64]

    def standardise(self, features: np.ndarray) -> npt.NDArray[np.float64]:
        """``(N, F)`` or ``(F,)`` raw features -> the scaled values the coefficients multiply."""
        return (features - self.mean) / self.scale

    def logits(self, features: np.ndarray) -> npt.NDArray[np.float64]:
        """``(N, C)`` decision values for ``(N, F)`` features."""
        return self.standardise(np.atleast_2d(features)) @ self.coef.T + self.intercept

    def predict(self, features: np.ndarray) -> npt.NDArray[np.intp]:
        """``(N,)`` class indices."""
        best: npt.NDArray[np.intp] = np.argmax(self.logits(features), axis=1)  # stubs: axis= gives Any
        return best

    def scores(self, features: np.ndarray) -> npt.NDArray[np.float64]:
        """``(N, C)`` softmax of the logits: probabilities for logistic regression, a ranking for an SVM."""
        z = self.logits(features)
        # numpy's stubs type reductions with axis= as Any (they may be scalars): the (N, 1) arrays are named
        peak: npt.NDArray[np.float64] = z.max(axis=1, keepdims=True)
        e = np.exp(z - peak)
        total: npt.NDArray[np.float64] = e.sum(axis=1, keepdims=True)
        return e / total

    def group_contributions(self, features: np.ndarray) -> dict[FeatureGroup, np.ndarray]:
        """For one ``(F,)`` vector: ``group -> (C,)`` share of each class's logit (they sum, with the
        intercept, to :meth:`logits`)."""
        weighted = self.coef * self.standardise(np.asarray(features, dtype=np.float64))[None, :]
        return {g: weighted[:, a:b].sum(axis=1) for g, (a, b) in self.settings.layout().items()}

    def without_groups(self, groups: set[FeatureGroup]) -> LinearTextureModel:
        """The same model with ``groups`` held at their training mean (their coefficients zeroed): the
        accuracy it keeps shows how much the trained model leans on those groups."""
        coef = self.coef.copy()
        for g, (a, b) in self.settings.layout().items():
            if g in groups:
                coef[:, a:b] = 0.0
        return LinearTextureModel(
            self.settings, self.class_names, self.kind, self.mean, self.scale, coef, self.intercept
        )
