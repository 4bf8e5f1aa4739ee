"""Human-readable output of ``steel classic`` (rich tables); ``--json`` bypasses it."""

from __future__ import annotations

from pydantic import JsonValue
from rich.console import Console
from rich.table import Table


def _metrics_table(metrics: dict[str, JsonValue]) -> Table:
    table = Table("class", "support", "precision", "recall", "F1")
    per_class = metrics.get("per_class")
    assert isinstance(per_class, dict)
    for name, v in per_class.items():
        assert isinstance(v, dict)
        table.add_row(
            name, str(v["support"]), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}"
        )
    return table


def _groups_table(ablation: JsonValue, reliance: JsonValue) -> Table:
    """Accuracy per feature group: refitted on it alone / without it (train only), and the trained model
    with the group held at its training mean (train and eval)."""
    refits = isinstance(ablation, dict)
    heads = ["val acc: this group only", "refit without it"] if refits else []
    table = Table("feature group", *heads, "trained model, group muted")
    assert isinstance(reliance, dict)
    for g, muted in reliance.items():
        row = ablation.get(g, {}) if isinstance(ablation, dict) else {}
        assert isinstance(row, dict)
        cells = [row.get("only"), row.get("without"), muted] if refits else [muted]
        table.add_row(g, *("-" if v is None else f"{v:.4f}" for v in cells))
    return table


def _number(value: JsonValue) -> float:
    assert isinstance(value, int | float)  # margins are written as numbers by the predict command
    return float(value)


def print_result(result: dict[str, JsonValue]) -> None:
    console = Console()
    if "images" in result and isinstance(result["images"], list):  # predict
        for item in result["images"]:
            assert isinstance(item, dict)
            groups = item["margin_by_group"]
            assert isinstance(groups, dict)
            margins = {g: _number(v) for g, v in groups.items()}
            pushes = ", ".join(f"{g} {v:+.2f}" for g, v in sorted(margins.items(), key=lambda kv: -kv[1]))
            head = f"{item['image']}: [bold]{item['class']}[/] {item['score']:.3f}"
            console.print(f"{head} (vs {item['runner_up']}: {pushes})")
        return
    metrics = result.get("metrics", result)
    assert isinstance(metrics, dict)
    console.print(
        f"[bold]{result['model']}[/] ({result['task']}): accuracy [bold]{metrics['accuracy']:.4f}[/] on "
        f"{metrics.get('samples')} samples from {metrics.get('images')} images"
    )
    console.print(_metrics_table(metrics))
    console.print(_groups_table(result.get("ablation"), result.get("reliance")))
    if "bundle" in result:
        console.print(f"bundle: {result['bundle']}")
