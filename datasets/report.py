"""The audit as a Markdown report with plots, for a reviewer who does not read JSON.

Plots use matplotlib's object API (``Figure`` + Agg canvas) rather than ``pyplot``: no global state
and no display needed, so reports can be written from the CLI, tests or a headless server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from datasets.audit import AuditResult
from datasets.model import AnnotatedSet

MAX_LISTED = 50  # rows per list in the report; the JSON output has them all
PLOTS = ("class_histogram.png", "box_sizes.png", "boxes_per_image.png")


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_class_histogram(result: AuditResult, path: Path) -> None:
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    names = list(result.per_class)
    ax.bar(names, [result.per_class[n] for n in names], color="tab:blue")
    ax.set_ylabel("boxes")
    ax.set_title("Boxes per class")
    ax.tick_params(axis="x", labelrotation=30)
    _save(fig, path)


def plot_box_sizes(aset: AnnotatedSet, path: Path) -> None:
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    labels = list(dict.fromkeys([*aset.class_names, *(b.label for im in aset.images for b in im.boxes)]))
    for label in labels:
        boxes = [b for im in aset.images for b in im.boxes if b.label == label]
        if boxes:
            ax.scatter([b.width for b in boxes], [b.height for b in boxes], s=6, alpha=0.5, label=label)
    ax.set_xlabel("box width (px)")
    ax.set_ylabel("box height (px)")
    ax.set_title("Box sizes by class")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(markerscale=2, fontsize="small")
    _save(fig, path)


def plot_boxes_per_image(result: AuditResult, path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    hist = result.boxes_per_image["histogram"]
    ax.bar([int(k) for k in hist], list(hist.values()), color="tab:green")
    ax.set_xlabel("boxes in the image")
    ax.set_ylabel("images")
    ax.set_title(f"Boxes per image (mean {result.boxes_per_image['mean']:.2f})")
    _save(fig, path)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows[:MAX_LISTED]]
    if len(rows) > MAX_LISTED:
        lines.append(f"\n_{len(rows) - MAX_LISTED} more rows in the JSON output (`--json`)._")
    return lines + [""]


def _pairs(names: list[str], pairs: list[dict[str, Any]], empty: str) -> list[str]:
    if not pairs:
        return [empty, ""]
    rows = [
        [p["a"], p["b"], p["distance"], f"{p['correlation']:.3f}", "yes" if p["identical"] else ""]
        for p in pairs
    ]
    return _table([*names, "distance", "correlation", "identical"], rows)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def render_markdown(result: AuditResult) -> str:
    """The report text; plots are referenced by the file names in :data:`PLOTS`."""
    verdict = "no errors" if result.ok else f"**{result.errors} errors**"
    out = [
        f"# Dataset audit: {result.source or 'in-memory set'}",
        "",
        f"Format `{result.format}`: {result.images} images, {result.boxes} boxes, {verdict}, "
        f"{result.warnings} warnings.",
        "",
    ]
    for section in (
        _classes_section,
        _box_sizes_section,
        _boxes_per_image_section,
        _label_mismatch_section,
        _repeated_boxes_section,
        _near_duplicates_section,
        _problems_section,
    ):
        out += section(result)
    return "\n".join(out)


def _classes_section(result: AuditResult) -> list[str]:
    out = ["## Classes", ""]
    out += _table(["class", "boxes"], [[n, c] for n, c in result.per_class.items()])
    return out + [f"![boxes per class]({PLOTS[0]})", ""]


def _box_sizes_section(result: AuditResult) -> list[str]:
    rows = []
    for scope, stats in [("all", result.box_stats["overall"]), *result.box_stats["per_class"].items()]:
        w, h, a = stats["width"], stats["height"], stats["area"]
        rows.append(
            [
                scope,
                w["count"],
                *(_fmt(w.get(k)) for k in ("min", "median", "max")),
                *(_fmt(h.get(k)) for k in ("min", "median", "max")),
                _fmt(a.get("median")),
            ]
        )
    out = ["## Box sizes (pixels)", ""]
    out += _table(
        ["class", "boxes", "w min", "w median", "w max", "h min", "h median", "h max", "area median"], rows
    )
    return out + [f"![box sizes]({PLOTS[1]})", ""]


def _boxes_per_image_section(result: AuditResult) -> list[str]:
    bpi = result.boxes_per_image
    out = [
        "## Boxes per image",
        "",
        f"Mean {bpi['mean']:.2f}, max {bpi['max']}; {bpi['images_without_boxes']} images without boxes.",
        "",
    ]
    out += _table(["boxes", "images"], [[k, v] for k, v in bpi["histogram"].items()])
    return out + [f"![boxes per image]({PLOTS[2]})", ""]


def _label_mismatch_section(result: AuditResult) -> list[str]:
    mm = result.label_filename_mismatch
    out = [
        "## Labels that differ from the file name's class",
        "",
        f"{mm['boxes']} boxes in {mm['files']} files "
        f"(of {mm['images_with_class_prefix']} named after a class). "
        "Not errors: labels come from the annotation, but worth a look.",
        "",
    ]
    if mm["items"]:
        out += _table(["file class -> label", "boxes"], [[k, v] for k, v in mm["by_pair"].items()])
        out += _table(
            ["image", "file class", "label", "boxes"],
            [[it["image"], it["file_class"], it["label"], it["count"]] for it in mm["items"]],
        )
    return out


def _repeated_boxes_section(result: AuditResult) -> list[str]:
    if not result.duplicate_boxes:
        return ["## Repeated boxes", "", "None.", ""]
    return ["## Repeated boxes", ""] + _table(
        ["image", "label", "xyxy", "copies"],
        [
            [d["image"], d["label"], ", ".join(f"{v:g}" for v in d["xyxy"]), d["count"]]
            for d in result.duplicate_boxes
        ],
    )


def _near_duplicates_section(result: AuditResult) -> list[str]:
    nd = result.near_duplicates
    if not nd:
        return ["## Near-duplicate images", "", "Not checked.", ""]
    out = [
        "## Near-duplicate images",
        "",
        f"dHash distance <= {nd['max_distance']} confirmed by detail correlation >= "
        f"{nd['min_correlation']}; {nd['hashed']} images hashed, {nd['candidates_rejected']} hash "
        "candidates rejected as look-alikes.",
        "",
    ]
    out += _pairs(["image", "image"], nd["within"], "None within the set.")
    if nd.get("against"):
        other = nd["against"]
        out += [f"Against `{other['source']}` ({other['hashed']} images):", ""]
        out += _pairs(["this set", "other set"], other["pairs"], "No image of this set appears in the other.")
    return out


def _problems_section(result: AuditResult) -> list[str]:
    if not result.problems:
        return ["## Problems", "", "None.", ""]
    return ["## Problems", ""] + _table(
        ["severity", "file", "item", "field", "message"],
        [
            [p["severity"], Path(p["file"]).name, p["item"], p["field"], p["message"]]
            for p in sorted(result.problems, key=lambda p: p["severity"] != "error")
        ],
    )


def write_report(result: AuditResult, aset: AnnotatedSet, out_dir: str | Path) -> Path:
    """Write ``report.md`` and its PNG plots into ``out_dir`` (created); returns the report's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_class_histogram(result, out_dir / PLOTS[0])
    plot_box_sizes(aset, out_dir / PLOTS[1])
    plot_boxes_per_image(result, out_dir / PLOTS[2])
    report = out_dir / "report.md"
    report.write_text(render_markdown(result), encoding="utf-8")
    return report
