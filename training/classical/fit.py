"""Fit a standard scaler and a linear classifier (scikit-learn) and turn them into plain arrays.

Only the arrays leave this module (:class:`~datasets.texture.linear.LinearTextureModel`), so a bundle
never needs scikit-learn, let alone pickle, to be read back.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from datasets.texture.linear import ClassifierKind, LinearTextureModel
from datasets.texture.settings import FeatureGroup, FeatureSettings


def label_indices(labels: list[str], class_names: tuple[str, ...]) -> np.ndarray:
    """``(N,)`` class indices; a label outside ``class_names`` is a ValueError naming it."""
    index = {name: k for k, name in enumerate(class_names)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(class_names)}")
    return np.array([index[lab] for lab in labels], dtype=np.int64)


def fit_linear(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    settings: FeatureSettings,
    class_names: tuple[str, ...],
    kind: ClassifierKind = "logistic-regression",
    c: float = 1.0,
    seed: int = 0,
) -> LinearTextureModel:
    """Scaler + classifier on ``(N, F)`` features and ``(N,)`` class indices; every class must occur."""
    missing = [class_names[k] for k in range(len(class_names)) if not np.any(targets == k)]
    if missing:
        raise ValueError(f"no training samples of class(es) {missing}")
    scaler = StandardScaler().fit(features)
    scaled = scaler.transform(features)
    if kind == "logistic-regression":
        clf = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    else:
        clf = LinearSVC(C=c, max_iter=20000, random_state=seed)
    clf.fit(scaled, targets)
    coef, intercept = np.asarray(clf.coef_, np.float64), np.asarray(clf.intercept_, np.float64)
    if len(class_names) == 2:  # scikit-learn keeps one row for two classes: logit(1) - logit(0)
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    return LinearTextureModel(
        settings=settings,
        class_names=class_names,
        kind=kind,
        mean=np.asarray(scaler.mean_, np.float64),
        scale=np.asarray(scaler.scale_, np.float64),
        coef=coef,
        intercept=intercept,
    )


def group_columns(settings: FeatureSettings, groups: tuple[FeatureGroup, ...]) -> np.ndarray:
    """Column indices of ``groups`` in the full layout of ``settings``."""
    layout = settings.layout()
    return np.concatenate([np.arange(*layout[g]) for g in groups])


def ablation(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    settings: FeatureSettings,
    class_names: tuple[str, ...],
    kind: ClassifierKind,
    c: float,
) -> dict[str, dict[str, float]]:
    """Validation accuracy refitted with each group alone (``only``) and with all but it (``without``)."""
    out: dict[str, dict[str, float]] = {}
    for group in settings.groups:
        row: dict[str, float] = {}
        rest = tuple(g for g in settings.groups if g != group)
        for label, groups in (("only", (group,)), ("without", rest)):
            if not groups:
                continue
            sub = settings.model_copy(update={"groups": groups})
            cols = group_columns(settings, groups)
            model = fit_linear(
                train[0][:, cols], train[1], settings=sub, class_names=class_names, kind=kind, c=c
            )
            row[label] = round(float(np.mean(model.predict(val[0][:, cols]) == val[1])), 4)
        out[group] = row
    return out


def reliance(model: LinearTextureModel, features: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Accuracy of the trained model with each group held at its training mean (no refit)."""
    return {
        g: round(float(np.mean(model.without_groups({g}).predict(features) == targets)), 4)
        for g in model.settings.groups
    }
