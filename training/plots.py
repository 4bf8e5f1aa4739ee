"""PNG plots of an evaluation and of a training run, for reports and the run folder.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never through pyplot:
no global backend switch, no display needed (CI, the training box), nothing left open between calls.
Every function writes one PNG, creating the parent folder, and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.evaluation import EvalResult


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    return out


def plot_pr_curves(result: EvalResult, path: str | Path) -> Path:
    """Precision-recall at IoU 0.50 per class (COCO's interpolated curves) and their mean.

    Classes without ground truth in the set have no curve and are left out.
    """
    fig = _figure(7, 5.5)
    ax = fig.subplots()
    curves = []
    for name in result.class_names:
        curve = result.pr_curves[name]
        if np.isnan(curve).all():
            continue
        curves.append(curve)
        ap50 = result.per_class[name]["ap50"]
        ax.plot(result.recall_grid, curve, linewidth=1, label=f"{name} {ap50:.3f}")
    if curves:
        mean_label = f"all classes mAP50 {result.map50:.3f}"
        ax.plot(result.recall_grid, np.mean(curves, axis=0), color="black", linewidth=2.5, label=mean_label)
        ax.legend(loc="lower left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title(f"Precision-recall at IoU 0.50 ({result.images} images)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion_matrix(result: EvalResult, path: str | Path, normalize: bool = True) -> Path:
    """The detection confusion matrix: rows ground truth, columns prediction, plus background.

    With ``normalize`` each row is divided by its sum, so a ground-truth row reads as "where its boxes went"
    and the background row as "which classes the false positives claimed". Empty rows stay zero.
    """
    cm = result.confusion_matrix.astype(np.float64)
    if normalize:
        sums = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)
    labels = [*result.class_names, "background"]
    n = len(labels)
    size = max(5.0, 0.8 * n + 2)
    fig = _figure(size, size * 0.85)
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = (1 if normalize else max(cm.max(), 1)) / 2
    for i in range(n):
        for j in range(n):
            if cm[i, j] == 0:
                continue
            text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            color = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="prediction", ylabel="ground truth")
    ax.set_title(
        f"Confusion matrix (conf >= {result.conf_threshold:g}, IoU >= {result.iou_threshold:g}"
        f"{', row-normalised' if normalize else ''})"
    )
    return _save(fig, path)


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for the rows where ``key`` holds a finite number (eval may skip epochs)."""
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        xs.append(float(row["epoch"]))
        ys.append(float(value))
    return xs, ys


def plot_training_curves(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss (train, and val when present) and val mAP50 / mAP50-95 per epoch, side by side.

    Args:
        rows: one dict per epoch with ``epoch``, ``train_loss``, optional ``val_loss``, ``map50``,
            ``map50_95``; a missing or ``None`` value leaves a gap rather than failing.
        path: the PNG to write.
    """
    fig = _figure(11, 4.2)
    ax_loss, ax_map = fig.subplots(1, 2)
    for key, label in (("train_loss", "train loss"), ("val_loss", "val loss")):
        xs, ys = _series(rows, key)
        if xs:
            ax_loss.plot(xs, ys, marker="o", markersize=3, label=label)
    for key, label in (("map50", "val mAP50"), ("map50_95", "val mAP50-95")):
        xs, ys = _series(rows, key)
        if xs:
            ax_map.plot(xs, ys, marker="o", markersize=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_map.set(xlabel="epoch", ylabel="mAP", title="Validation mAP", ylim=(0, 1))
    for ax in (ax_loss, ax_map):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return _save(fig, path)
