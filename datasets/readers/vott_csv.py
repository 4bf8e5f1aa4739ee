"""VoTT CSV export reader (``<name>-export.csv``), see FORMAT-NOTES.md §6.

One row per (region, tag): ``"image","xmin","ymin","xmax","ymax","label"`` with 0-based float pixels,
used as they are. VoTT ends lines with the OS's EOL (CRLF on Windows) and writes no trailing newline;
hand-made files often add one: all are accepted. The CSV has no image sizes, so sizes come from the
image files; rows of one image are gathered into one record, in order of first appearance. Problems
name the row as ``line N`` (the header is line 1).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from datasets.model import AnnotatedSet
from datasets.problems import AnnotationError, Problem, ProblemLog
from datasets.readers.detect import export_file_in
from datasets.validate import RawBox, RawRecord, build_set, number

COLUMNS: tuple[str, ...] = ("image", "xmin", "ymin", "xmax", "ymax", "label")


def read_vott_csv(
    path: Path | str,
    *,
    images_dir: Path | str | None = None,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
) -> AnnotatedSet:
    """Read a VoTT CSV export (or the folder holding exactly one ``*-export.csv``).

    Images are searched in ``images_dir``, the CSV's folder, its ``images/`` subfolder, then the
    ``images/`` folder beside the CSV's folder (NEU-DET's ``vott/`` layout).
    """
    path = Path(path)
    if path.is_dir():
        path = export_file_in(path, "-export.csv")
    if not path.is_file():
        raise AnnotationError(Problem("error", str(path), "", "", "no such file"))
    file = str(path)
    log = ProblemLog(strict=strict)
    records = parse_csv(path, log)
    return build_set(
        records,
        file=file,
        search_dirs=[images_dir, path.parent, path.parent / "images", path.parent.parent / "images"],
        log=log,
        class_names=class_names,
        source=file,
        format="vott-csv",
    )


def parse_csv(path: Path, log: ProblemLog) -> list[RawRecord]:
    """Rows gathered into one raw record per image (empty list when the file is unusable)."""
    file = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        log.error(file, "", "", f"unreadable CSV: {exc}")
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    records: dict[str, RawRecord] = {}
    try:
        header = next(reader, None)
        if header is None:
            log.error(file, "line 1", "", "empty file: expected the header " + ",".join(COLUMNS))
            return []
        columns = [h.strip().lower() for h in header]
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            log.error(file, "line 1", "", f"header lacks column(s) {', '.join(missing)}: got {header[:10]}")
            return []
        index = {c: columns.index(c) for c in COLUMNS}
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines (a trailing newline) carry nothing
            _parse_row(row, index, f"line {reader.line_num}", file, log, records)
    except csv.Error as exc:
        log.error(file, f"line {reader.line_num}", "", f"malformed CSV: {exc}; rest of file skipped")
    return list(records.values())


def _parse_row(
    row: list[str],
    index: dict[str, int],
    line: str,
    file: str,
    log: ProblemLog,
    records: dict[str, RawRecord],
) -> None:
    if len(row) < len(index) or len(row) <= max(index.values()):
        log.error(file, line, "", f"{len(row)} cells, expected {len(COLUMNS)}; row skipped")
        return
    image = row[index["image"]].strip()
    if not image:
        log.error(file, line, "image", "empty image name; row skipped")
        return
    item = f"{line} ({image})"
    label = row[index["label"]].strip()
    if not label:
        log.error(file, item, "label", "empty label; row skipped")
        return
    values = [number(row[index[c]], log, file, item, c, text=True) for c in ("xmin", "ymin", "xmax", "ymax")]
    if any(v is None for v in values):
        return
    x1, y1, x2, y2 = (float(v) for v in values)  # type: ignore[arg-type]
    rec = records.get(image)
    if rec is None:
        rec = records[image] = RawRecord(name=image, item=image, name_field="image")
    rec.boxes.append(RawBox(x1, y1, x2, y2, label, field="xmin..ymax", label_field="label", item=item))
