"""``steel data``: audit an annotated set and write a reproducible train/val split.

Exit codes: 0 no errors, 1 the annotations have errors (each named by file, item and field),
2 a usage error (unknown option value, a path that does not exist, a format that cannot be told).
With ``--json`` the audit prints exactly one JSON object on stdout; everything else goes to stderr.
The top-level ``steel`` app mounts this one as ``steel data``; ``python -m datasets.cli`` runs it alone.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from datasets.audit import DEFAULT_NEAR_DUP_DISTANCE, AuditResult, audit
from datasets.background import BackgroundRule, select_clean_tiles, write_manifest, write_tiles
from datasets.background_report import write_background_report
from datasets.model import AnnotatedSet
from datasets.problems import AnnotationError, Problem
from datasets.readers import FORMATS, detect_format, read_dataset
from datasets.report import write_report
from datasets.split import SplitError, apply_split, make_split, write_split

app = typer.Typer(help="Dataset tools", no_args_is_help=True, add_completion=False)
# markup off: file names like "[patches_1.jpg]" and messages must print as they are; colour via style=
out = Console(highlight=False, markup=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
MAX_SHOWN = 20  # problems listed in the human summary


class Format(enum.StrEnum):
    """``--format`` choices: ``auto`` and every reader's name (checked against ``FORMATS`` below)."""

    auto = "auto"
    voc = "voc"
    vott_json = "vott-json"
    vott_project = "vott-project"
    vott_csv = "vott-csv"
    coco = "coco"


if tuple(f.value for f in Format)[1:] != FORMATS:
    raise ImportError(f"datasets.cli.Format lists other formats than the readers' {FORMATS}")

PathArg = Annotated[
    Path,
    typer.Argument(
        exists=True, metavar="PATH", help="Annotation file or folder (VOC folder, VoTT export/project, COCO)."
    ),
]
FormatOpt = Annotated[
    Format, typer.Option("--format", help="Annotation format; auto tells it from the path.")
]
ImagesOpt = Annotated[
    Path | None,
    typer.Option("--images", exists=True, file_okay=False, help="Folder searched first for the image files."),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first annotation error.")]


def _parse_classes(value: str | None) -> list[str] | None:
    """``--classes a,b,c`` as a list of distinct, non-empty names (None when not given)."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise typer.BadParameter(f"{value!r} has an empty class name", param_hint="--classes")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise typer.BadParameter(f"{', '.join(repeated)} given more than once", param_hint="--classes")
    return names


ClassesOpt = Annotated[
    str | None,
    typer.Option(
        "--classes",
        metavar="NAME,NAME,...",
        help="The allowed class names (as in a training config's data.classes); any other label is an "
        "error naming file, asset and label. Default: the file's own tags/categories.",
    ),
]


class AnnotationFailure(Exception):
    """Raised by :func:`_read` after reporting; commands turn it into exit 1."""

    def __init__(self, exc: AnnotationError):
        super().__init__(str(exc))
        self.problem = exc.problem


def _read(
    path: Path,
    fmt: Format,
    images: Path | None,
    strict: bool,
    hint: str = "PATH",
    classes: list[str] | None = None,
) -> AnnotatedSet:
    """Read a set, turning a format that cannot be told into a usage error (exit 2) and a strict
    failure into exit 1 with the problem on stderr."""
    name = fmt.value
    if name == "auto":
        try:
            name = detect_format(path)
        except AnnotationError as exc:
            raise typer.BadParameter(
                f"{exc.problem.file}: {exc.problem.message}; pass --format", param_hint=hint
            ) from None
    err.print(f"reading {path} as {name}", style="dim")
    try:
        return read_dataset(path, format=name, images_dir=images, class_names=classes, strict=strict)
    except AnnotationError as exc:
        err.print(str(exc.problem), style="red")
        raise AnnotationFailure(exc) from None


@app.command("audit")
def audit_command(
    path: PathArg,
    format: FormatOpt = Format.auto,
    images: ImagesOpt = None,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against", exists=True, help="Another set (e.g. the test split) to check for shared images."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    report: Annotated[
        Path | None, typer.Option("--report", file_okay=False, help="Write report.md and plots here.")
    ] = None,
    strict: StrictOpt = False,
    classes: ClassesOpt = None,
    near_dup_distance: Annotated[
        int, typer.Option("--near-dup-distance", min=0, max=64, help="dHash bits that make a near-duplicate.")
    ] = DEFAULT_NEAR_DUP_DISTANCE,
) -> None:
    """Count, check and describe an annotated set; exit 1 when it has errors."""
    class_names = _parse_classes(classes)
    try:
        aset = _read(path, format, images, strict, classes=class_names)
        other = (
            _read(against, Format.auto, None, False, "--against", classes=class_names)
            if against is not None
            else None
        )
    except AnnotationFailure as exc:
        if as_json:
            fatal = {"images": None, "boxes": None, "per_class": None, "errors": 1, "fatal": str(exc)}
            print(json.dumps({**fatal, "problems": [exc.problem.to_dict()]}))
        raise typer.Exit(1) from None
    if other is not None and other.problems:
        n_err = sum(p.severity == "error" for p in other.problems)
        err.print(
            f"--against {against}: {len(other.problems)} problems ({n_err} errors) reading it; not counted"
        )
    result = audit(aset, against=other, near_dup_distance=near_dup_distance)
    if report is not None:
        err.print(f"report written to {write_report(result, aset, report)}")
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        _print_summary(result)
    raise typer.Exit(0 if result.ok else 1)


def _validate_fraction(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise typer.BadParameter(f"{value} is not in [0, 1)")
    return value


@app.command("split")
def split_command(
    path: PathArg,
    out_file: Annotated[Path, typer.Option("--out", dir_okay=False, help="Split file to write (JSON).")],
    format: FormatOpt = Format.auto,
    images: ImagesOpt = None,
    val_fraction: Annotated[
        float,
        typer.Option("--val-fraction", callback=_validate_fraction, help="Share of each stratum for val."),
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Same seed and images, same split.")] = 0,
    strict: StrictOpt = False,
    classes: ClassesOpt = None,
) -> None:
    """Write a reproducible train/val split stratified by class, with each image's content hash."""
    class_names = _parse_classes(classes)
    try:
        aset = _read(path, format, images, strict, classes=class_names)
    except AnnotationFailure:
        raise typer.Exit(1) from None
    errors = [p for p in aset.problems if p.severity == "error"]
    if errors:
        for p in errors[:MAX_SHOWN]:
            err.print(str(p), style="red")
        err.print(f"{len(errors)} annotation errors: fix them before splitting (see `steel data audit`)")
        raise typer.Exit(1)
    try:
        split = make_split(aset, val_fraction=val_fraction, seed=seed)
    except SplitError as exc:
        err.print(str(exc), style="red")
        raise typer.Exit(1) from None
    write_split(split, out_file)
    train, val = apply_split(aset, split, check=False)
    table = Table(title=f"Split {split.split_sha256[:12]} (seed {seed}) -> {out_file}")
    for col in ("class", "train boxes", "val boxes", "val share"):
        table.add_column(col, justify="left" if col == "class" else "right")
    tc, vc = train.per_class(), val.per_class()
    for name in aset.class_names:
        total = tc.get(name, 0) + vc.get(name, 0)
        table.add_row(
            name,
            str(tc.get(name, 0)),
            str(vc.get(name, 0)),
            f"{vc.get(name, 0) / total:.1%}" if total else "",
        )
    table.add_row(
        "images", str(len(train.images)), str(len(val.images)), f"{len(val.images) / len(aset.images):.1%}"
    )
    out.print(table)


@app.command("background")
def background_command(
    path: PathArg,
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False, help="Folder for tiles and report.")],
    format: FormatOpt = Format.auto,
    images: ImagesOpt = None,
    margin: Annotated[int, typer.Option("--margin", min=0, help="Pixels kept from every box.")] = 12,
    sizes: Annotated[str, typer.Option("--sizes", help="Tile sides in source pixels, largest first.")] = (
        "128,96,64"
    ),
    max_box_cover: Annotated[
        float, typer.Option("--max-box-cover", help="Skip images whose boxes cover more than this share.")
    ] = 0.5,
    per_image: Annotated[int, typer.Option("--per-image", min=1, help="Most tiles per image.")] = 4,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-class",
            help="Source classes to take no tiles from (repeat); default "
            "crazing, pitted_surface; pass 'none' to keep all.",
        ),
    ] = None,
    contact_sheet: Annotated[
        int, typer.Option("--contact-sheet", min=0, help="Tiles per class on contact sheets to look at.")
    ] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Cut defect-free tiles (at a margin from every box, never up-scaled) with an audit-style report."""
    rule = _background_rule(margin, sizes, max_box_cover, per_image, exclude)
    try:
        aset = _read(path, format, images, False)
    except AnnotationFailure:
        raise typer.Exit(1) from None
    result = select_clean_tiles(aset, rule)
    manifest = write_tiles(result, aset, out_dir)
    report = write_background_report(result, out_dir, records=aset.by_name(), per_class_sheet=contact_sheet)
    write_manifest(result, out_dir)  # again, now naming the tiles drawn on the contact sheets
    err.print(f"{len(result.tiles)} tiles -> {manifest}; report {report}")
    summary = {k: v for k, v in result.to_dict().items() if k != "items"}
    if as_json:
        print(json.dumps(summary))
        return
    _print_background_table(summary, aset.class_names, margin=margin, images=result.images)


def _background_rule(
    margin: int, sizes: str, max_box_cover: float, per_image: int, exclude: list[str] | None
) -> BackgroundRule:
    """The options as a :class:`BackgroundRule`; a bad value is a usage error naming the options."""
    try:
        side_list = tuple(int(s) for s in sizes.split(",") if s.strip())
        rule = BackgroundRule(
            margin_px=margin,
            tile_sizes_px=side_list,
            min_tile_px=min(side_list, default=0),
            max_box_cover=max_box_cover,
            max_tiles_per_image=per_image,
        )
        if exclude is not None:  # else the rule's default classes
            rule = dataclasses.replace(rule, exclude_classes=tuple(e for e in exclude if e != "none"))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sizes/--margin/--max-box-cover") from None
    return rule


def _print_background_table(
    summary: dict[str, Any], class_names: Sequence[str], *, margin: int, images: int
) -> None:
    table = Table(title=f"Clean tiles (margin {margin} px) from {images} images")
    for col in ("source class", "tiles", "excluded images", "images too covered", "images without room"):
        table.add_column(col, justify="left" if col == "source class" else "right")
    for name in class_names:
        table.add_row(
            name,
            str(summary["per_class"].get(name, 0)),
            str(summary["skipped_class"].get(name, 0)),
            str(summary["skipped_covered"].get(name, 0)),
            str(summary["without_room"].get(name, 0)),
        )
    out.print(table)
    out.print(f"sizes (px: tiles): {summary['sizes_px']}")


def _print_summary(r: AuditResult) -> None:
    verdict = "no errors" if r.ok else f"{r.errors} errors"
    counts = f"{r.images} images, {r.boxes} boxes, {verdict}, {r.warnings} warnings"
    out.print(f"{r.source} ({r.format}): {counts}", style="bold green" if r.ok else "bold red")

    table = Table(title="Boxes per class")
    for col in ("class", "boxes", "w median", "h median", "area median"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, count in r.per_class.items():
        stats = r.box_stats["per_class"].get(name, {})
        table.add_row(name, str(count), *(_median(stats, k) for k in ("width", "height", "area")))
    overall = r.box_stats["overall"]
    table.add_row(
        "all", str(r.boxes), *(_median(overall, k) for k in ("width", "height", "area")), style="bold"
    )
    out.print(table)

    bpi = r.boxes_per_image
    hist = ", ".join(f"{k}: {v}" for k, v in bpi["histogram"].items())
    out.print(
        f"Boxes per image: mean {bpi['mean']:.2f}; {bpi['images_without_boxes']} without boxes; {{{hist}}}"
    )
    mm = r.label_filename_mismatch
    out.print(f"Labels differing from the file name's class: {mm['boxes']} boxes in {mm['files']} files")
    for pair, n in mm["by_pair"].items():
        out.print(f"  {pair}: {n}")
    out.print(f"Repeated boxes: {len(r.duplicate_boxes)}")
    for d in r.duplicate_boxes:
        out.print(f"  {d['image']}: {d['label']} {d['xyxy']} x{d['count']}")
    _print_near_duplicates(r.near_duplicates)
    _print_problems(r.problems)


def _median(stats: dict[str, Any], key: str) -> str:
    value = stats.get(key, {}).get("median")
    return "" if value is None else f"{value:.0f}"


def _print_near_duplicates(nd: dict[str, Any]) -> None:
    if not nd:
        return
    out.print(f"Near-duplicate images (dHash <= {nd['max_distance']}, confirmed): {len(nd['within'])}")
    for p in nd["within"]:
        out.print(f"  {p['a']} ~ {p['b']} (distance {p['distance']}, corr {p['correlation']:.3f})")
    if nd.get("against"):
        pairs = nd["against"]["pairs"]
        out.print(f"Shared with {nd['against']['source']}: {len(pairs)}")
        for p in pairs:
            out.print(f"  {p['a']} ~ {p['b']} (distance {p['distance']}, corr {p['correlation']:.3f})")


def _print_problems(problems: list[dict[str, str]]) -> None:
    """Errors one per line (up to MAX_SHOWN); warnings counted by field (indices dropped), with an example."""
    errors = [p for p in problems if p["severity"] == "error"]
    for p in errors[:MAX_SHOWN]:
        out.print(str(Problem("error", p["file"], p["item"], p["field"], p["message"])), style="red")
    if len(errors) > MAX_SHOWN:
        out.print(f"... {len(errors) - MAX_SHOWN} more errors (use --json or --report for all)", style="red")
    by_field: dict[str, list[dict[str, str]]] = {}
    for p in problems:
        if p["severity"] == "warning":
            by_field.setdefault(re.sub(r"\[\d+\]", "[]", p["field"]), []).append(p)  # object[3] -> object[]
    if by_field:
        out.print(f"Warnings ({sum(len(v) for v in by_field.values())}) by field:")
        for fld, items in sorted(by_field.items(), key=lambda kv: -len(kv[1])):
            first = items[0]
            where = (
                f"{Path(first['file']).name} [{first['item']}]" if first["item"] else Path(first["file"]).name
            )
            out.print(f"  {fld or '-'} x{len(items)}, e.g. {where}: {first['message']}", style="yellow")


if __name__ == "__main__":
    app()
