"""Accuracy, per-class precision/recall/F1 and the confusion matrix of a classical model, as JSON-ready
numbers, and the confusion matrix as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import JsonValue
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def classification_report(
    targets: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]
) -> dict[str, JsonValue]:
    """``accuracy``, ``per_class`` ({name: support, precision, recall, f1}) and ``confusion_matrix``
    (``labels`` and ``matrix``: rows are the true class, columns the predicted one)."""
    labels = list(range(len(class_names)))
    matrix = confusion_matrix(targets, predicted, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=labels, zero_division=0
    )
    per_class: dict[str, JsonValue] = {
        name: {
            "support": int(support[k]),
            "precision": round(float(precision[k]), 4),
            "recall": round(float(recall[k]), 4),
            "f1": round(float(f1[k]), 4),
        }
        for k, name in enumerate(class_names)
    }
    accuracy = float(np.mean(targets == predicted)) if len(targets) else 0.0
    return {
        "accuracy": round(accuracy, 4),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(class_names), "matrix": matrix.tolist()},
    }


def plot_confusion(
    targets: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...], path: Path, *, title: str
) -> Path:
    """The confusion matrix as counts with row-normalised colour (true class per row), written to ``path``."""
    # pyplot takes about a second to import and picks a global backend: only this plot needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"), which must come first

    counts = confusion_matrix(targets, predicted, labels=list(range(len(class_names)))).astype(np.float64)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.0 * n + 2.0))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(int(counts[i, j])),
                ha="center",
                va="center",
                color="white" if rows[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(n), class_names, rotation=35, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
