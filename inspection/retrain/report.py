"""A retrain run's summary as text: data added per class, metrics before/after per class, the decision."""

from __future__ import annotations

from typing import Any


def _num(value: Any) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def _pair(metrics: dict[str, Any], key: str, name: str | None) -> str:
    champ = metrics.get(key, {}).get("champion") or {}
    chall = metrics.get(key, {}).get("challenger") or {}
    if name is None:
        a, b = champ.get("map50"), chall.get("map50")
    else:
        a = (champ.get("per_class") or {}).get(name, {}).get("ap50")
        b = (chall.get("per_class") or {}).get(name, {}).get("ap50")
    delta = "" if a is None or b is None else f" ({b - a:+.3f})"
    return f"{_num(a)} -> {_num(b)}{delta:<9}"


def _operating_lines(points: dict[str, Any]) -> list[str]:
    """Per class on the fixed set, each model at its own threshold: reject recall and false rejects."""
    champ = (points.get("champion") or {}).get("fixed_set") or {}
    chall = (points.get("challenger") or {}).get("fixed_set") or {}
    if not chall:
        return []
    lines = [f"{'operating point':<18}{'threshold champ -> chall':>26}   {'reject recall':<24}false rejects"]
    for name, b in chall.items():
        a = champ.get(name) or {}
        thr = f"{_num(a.get('threshold'))} -> {_num(b.get('threshold'))}"
        rec = f"{_num(a.get('recall'))} -> {_num(b.get('recall'))}"
        lines.append(
            f"{name:<18}{thr:>26}   {rec:<24}{a.get('false_rejects', '-')} -> {b.get('false_rejects')}"
        )
    return lines


def format_summary(summary: dict[str, Any]) -> str:
    """Plain text for the terminal and for cron mail (no colour codes)."""
    lines = []
    decision = summary.get("decision") or {}
    status = summary.get("status", "?")
    lines.append(
        f"retrain run {summary.get('run_id')}: {status.upper()}  challenger {summary.get('challenger')}  "
        f"champion {summary.get('champion')}  (fine-tuned from {summary.get('fine_tuned_from') or 'scratch'})"
    )
    data = summary.get("data_added") or {}
    reviews = data.get("reviews") or summary.get("reviews") or {}
    if reviews:
        lines.append(
            f"reviews {reviews.get('after', 0) + 1}..{reviews.get('up_to')}: confirmed "
            f"{reviews.get('confirmed', 0)}, relabelled {reviews.get('relabelled', 0)}, "
            f"rejected {reviews.get('rejected', 0)}"
        )
    if data:
        skipped = ", ".join(f"{k} {v}" for k, v in (data.get("skipped") or {}).items()) or "none"
        lines.append(
            f"data added: {data.get('images', 0)} images ({data.get('background_images', 0)} background) "
            f"from {data.get('frames', 0)} frames; train {data.get('train', {}).get('images', 0)}, "
            f"val {data.get('val', {}).get('images', 0)}; skipped: {skipped}"
        )
    training = summary.get("training") or {}
    if training:
        lines.append(
            f"training set: {training.get('train_images')} images (base {training.get('base', 0)}, "
            f"earlier snapshots {training.get('previous_snapshots', 0)}, new {training.get('new', 0)}); "
            f"fixed set {training.get('fixed_images')} images"
        )
    metrics = summary.get("metrics") or {}
    if metrics:
        lines.append(
            f"{'class':<18}{'boxes added tr/val':>19}   "
            f"{'fixed AP50 champ -> chall':<34}new AP50 champ -> chall"
        )
        train_counts = (data.get("train") or {}).get("boxes_per_class") or {}
        val_counts = (data.get("val") or {}).get("boxes_per_class") or {}
        names = list((metrics.get("fixed", {}).get("challenger") or {}).get("per_class", {}))
        for name in names:
            added = f"{train_counts.get(name, 0)}/{val_counts.get(name, 0)}"
            lines.append(
                f"{name:<18}{added:>19}   {_pair(metrics, 'fixed', name):<34}{_pair(metrics, 'new', name)}"
            )
        lines.append(
            f"{'mAP@0.5':<18}{'':>19}   {_pair(metrics, 'fixed', None):<34}{_pair(metrics, 'new', None)}"
        )
    lines.extend(_operating_lines(summary.get("operating_points") or {}))
    if decision:
        lines.append(f"decision: {decision.get('reason')}")
    elif summary.get("reason"):
        lines.append(f"reason: {summary['reason']}")
    return "\n".join(lines)
