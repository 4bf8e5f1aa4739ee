"""Checks every reader shares: numbers, labels, box geometry, duplicates and the image files.

Readers only parse: they turn their format into :class:`RawRecord` objects (names, sizes and boxes
already converted to 0-based ``xyxy`` floats, each box remembering the field it came from) and hand
them to :func:`build_set`. The rules below are therefore the same for VOC, VoTT and COCO:

- a missing or unreadable image is an **error**, but the record is kept with ``path=None`` (its boxes
  are still counted and checked against the annotated size): an audit must see every box, and
  consumers that need pixels skip ``path is None``;
- a box that is wholly outside the image, or has zero or negative area, is an **error** and is dropped;
  one partly outside is clipped to the image with a **warning**;
- a label outside ``class_names`` is an **error** and only that box is dropped;
- an exact duplicate (same label and coordinates) is a **warning** and both copies are *kept*: NEU-DET's
  published count of 3,366 boxes includes its three duplicated boxes, and dropping them would make our
  counts disagree with every other tool;
- an annotated image size that disagrees with the file is a **warning**; the file's size wins.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datasets.images import UnreadableImageError, inspect_image, resolve_image
from datasets.model import NEU_DET_CLASSES, AnnotatedSet, Box, ImageRecord, Origin
from datasets.problems import ProblemLog

LOOK_ALIKE_RATIO = 0.85  # difflib ratio: 'crazng' vs 'crazing' is 0.92, 'patches' vs 'scratches' 0.75


@dataclass(slots=True)
class RawBox:
    """A parsed but unchecked box: 0-based ``xyxy`` floats plus where it came from, for messages."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    field: str
    label_field: str = ""
    item: str = ""  # overrides the record's item (a CSV row), empty = the record's


@dataclass(slots=True)
class RawRecord:
    """A parsed but unchecked image: its name, annotated size (if any) and boxes."""

    name: str
    item: str
    boxes: list[RawBox] = field(default_factory=list)
    size: tuple[int, int] | None = None
    size_field: str = "size"
    name_field: str = "name"
    asset_id: str = ""
    file: str = ""  # the annotation file, when records of one set come from several files (VOC)


class RepeatedKeyObject(dict[str, object]):
    """A JSON object that held some key more than once: the first value is kept, later ones in ``repeated``.

    ``json`` keeps the *last* value of a repeated key without a word, so a VoTT export holding one asset
    id twice would lose a record silently. :func:`load_json` reports every repeat as an error naming
    its JSON path, except in the objects a reader reports itself (``ids_at``: VoTT's ``assets``, whose
    messages name the asset and both image names).
    """

    repeated: list[tuple[str, object]]


class _RepeatTracker:
    """The ``object_pairs_hook`` for :func:`json.loads`; remembers whether any object repeated a key."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        repeats: list[tuple[str, object]] = []
        for key, value in pairs:
            if key in out:
                repeats.append((key, value))
            else:
                out[key] = value
        if not repeats:
            return out
        self.seen = True
        obj = RepeatedKeyObject(out)
        obj.repeated = repeats
        return obj


def repeated_keys(obj: object) -> list[tuple[str, object]]:
    """The later ``(key, value)`` pairs of keys repeated in a JSON object read by :func:`load_json`."""
    return list(obj.repeated) if isinstance(obj, RepeatedKeyObject) else []


def _report_repeats(data: object, file: str, log: ProblemLog, ids_at: tuple[str, ...]) -> None:
    """An error per repeated key, named by its JSON path (``images[3].id``); iterative, any depth."""
    stack: list[tuple[str, object]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            if isinstance(value, RepeatedKeyObject) and where not in ids_at:
                for key, _ in value.repeated:
                    field = f"{where}.{key}" if where else key
                    log.error(file, "", field, f"key {key!r} appears more than once; the first value is used")
            stack.extend((f"{where}.{k}" if where else k, v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))


def load_json(path: Path, log: ProblemLog, *, ids_at: tuple[str, ...] = ()) -> tuple[bool, object]:
    """``(True, data)`` for a well-formed UTF-8 JSON file, else ``(False, None)`` and a "malformed" error.

    A key repeated in an object keeps its first value and is an error (see :class:`RepeatedKeyObject`);
    ``ids_at`` names top-level objects whose repeats the caller reports itself.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        log.error(str(path), "", "", f"cannot read: {exc.strerror or exc}")
        return False, None
    tracker = _RepeatTracker()
    try:
        data = json.loads(raw, object_pairs_hook=tracker)
    except json.JSONDecodeError as exc:
        log.error(str(path), "", "", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        return False, None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, huge integers, absurd nesting
        log.error(str(path), "", "", f"malformed JSON: {exc}")
        return False, None
    if tracker.seen:
        _report_repeats(data, str(path), log, ids_at)
    return True, data


def number(
    value: object, log: ProblemLog, file: str, item: str, field: str, *, text: bool = False
) -> float | None:
    """A finite float from a JSON number (with ``text``, also from an XML/CSV string); else an error, None."""
    if value is None:
        log.error(file, item, field, "missing value")
        return None
    if isinstance(value, bool):
        log.error(file, item, field, f"not a number: {value!r}")
        return None
    if isinstance(value, int | float):
        result = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    elif text and isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            log.error(file, item, field, f"not a number: {value!r}")
            return None
    else:
        log.error(file, item, field, f"not a number: {_short(value)}")
        return None
    if not math.isfinite(result):
        log.error(file, item, field, f"not a finite number: {_short(value)}")
        return None
    return result


def image_size_value(
    width: object, height: object, log: ProblemLog, file: str, item: str, field: str, *, text: bool = False
) -> tuple[int, int] | None:
    """An annotated ``(width, height)`` of positive integers, or None (with a warning) when unusable.

    A bad annotated size is only a warning: the image file is the authority on its size.
    """
    if width is None and height is None:
        return None
    quiet = ProblemLog()
    w = number(width, quiet, file, item, f"{field}.width", text=text)
    h = number(height, quiet, file, item, f"{field}.height", text=text)
    if w is None or h is None or w <= 0 or h <= 0 or w != int(w) or h != int(h):
        log.warning(file, item, field, f"unusable image size {_short(width)}x{_short(height)}; ignored")
        return None
    return int(w), int(h)


def choose_class_names(labels: Iterable[str], declared: Sequence[str] | None = None) -> tuple[str, ...]:
    """The declared names if any, else NEU-DET's six when every label is one of them, else sorted labels."""
    if declared:
        return tuple(dict.fromkeys(declared))
    seen = set(labels)
    if seen <= set(NEU_DET_CLASSES):
        return NEU_DET_CLASSES
    return tuple(sorted(seen))


def check_box(raw: RawBox, *, width: int, height: int, log: ProblemLog, file: str, item: str) -> Box | None:
    """The box clipped to a ``width`` x ``height`` image (0 = unknown), or None when it must be dropped."""
    where = raw.item or item
    x1, y1, x2, y2 = raw.x1, raw.y1, raw.x2, raw.y2
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        log.error(
            file,
            where,
            raw.field,
            f"{raw.label} box has non-finite coordinates {(x1, y1, x2, y2)}; box dropped",
        )
        return None
    if x2 <= x1 or y2 <= y1:
        log.error(
            file,
            where,
            raw.field,
            f"{raw.label} box has zero or negative area: x {x1:g}..{x2:g}, y {y1:g}..{y2:g}; box dropped",
        )
        return None
    w_lim = width if width > 0 else math.inf
    h_lim = height if height > 0 else math.inf
    if x1 >= w_lim or y1 >= h_lim or x2 <= 0 or y2 <= 0:
        log.error(
            file,
            where,
            raw.field,
            f"{raw.label} box x {x1:g}..{x2:g}, y {y1:g}..{y2:g} lies wholly outside the "
            f"{width}x{height} image; dropped",
        )
        return None
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, w_lim), min(y2, h_lim)
    if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
        log.warning(
            file,
            where,
            raw.field,
            f"{raw.label} box x {x1:g}..{x2:g}, y {y1:g}..{y2:g} extends outside the {width}x{height} image; "
            f"clipped to x {cx1:g}..{cx2:g}, y {cy1:g}..{cy2:g}",
        )
    return Box(float(cx1), float(cy1), float(cx2), float(cy2), raw.label)


def build_set(
    records: Iterable[RawRecord],
    *,
    file: str,
    search_dirs: Sequence[Path | str | None],
    log: ProblemLog,
    class_names: Sequence[str] | None,
    declared_names: Sequence[str] | None = None,
    source: str = "",
    format: str = "",
) -> AnnotatedSet:
    """Check parsed records against their images and the class names; the one place sets are built.

    Args:
        records: parsed records in the order the set should keep.
        file: the annotation file named in problems (a record's own ``file`` overrides it).
        search_dirs: folders searched, in order, for each record's image name.
        log: where problems go (raises on the first error when strict).
        class_names: the caller's class names; labels outside them are errors.
        declared_names: names the annotation file itself declares (VoTT tags, COCO categories),
            used when ``class_names`` is None.
    """
    records = list(records)
    if class_names:
        names = tuple(dict.fromkeys(class_names))
    else:
        names = choose_class_names((b.label for r in records for b in r.boxes), declared_names)
        _warn_look_alike_names(names, file, log)
    known = set(names)
    images: list[ImageRecord] = []
    seen_names: dict[str, str] = {}
    for rec in records:
        rec_file = rec.file or file
        if rec.name in seen_names:
            log.error(
                rec_file,
                rec.item,
                rec.name_field,
                f"image name {rec.name!r} already used by {seen_names[rec.name]}; record skipped",
            )
            continue
        seen_names[rec.name] = rec.item or rec.name
        images.append(_check_record(rec, rec_file, search_dirs, log, known))
    return AnnotatedSet(images=images, class_names=names, problems=log.problems, source=source, format=format)


LOOK_ALIKE_MAX_NAMES = 200  # pairwise matching: 200 names take well under a second


def _warn_look_alike_names(names: Sequence[str], file: str, log: ProblemLog) -> None:
    """A warning for each pair of class names one typo apart (``crazng`` beside ``crazing``).

    Without a configured class list the file decides the classes, so a mistyped tag would become a
    class of its own; only a configured list (``--classes``, ``data.classes``) makes it an error.
    The comparison is pairwise, so a file with more than ``LOOK_ALIKE_MAX_NAMES`` classes (no real
    defect catalogue has that many) gets one warning instead of minutes of string matching.
    """
    if len(names) > LOOK_ALIKE_MAX_NAMES:
        log.warning(
            file,
            "",
            "class names",
            f"{len(names)} class names: look-alike names not checked (more than {LOOK_ALIKE_MAX_NAMES}); "
            "pass the class list to make unknown labels errors",
        )
        return
    for i, name in enumerate(names):
        for other in difflib.get_close_matches(name, names[i + 1 :], n=3, cutoff=LOOK_ALIKE_RATIO):
            log.warning(
                file,
                "",
                "class names",
                f"classes {name!r} and {other!r} look alike (a typo?); pass the class list to make "
                "unknown labels errors",
            )


def _check_record(
    rec: RawRecord, file: str, search_dirs: Sequence[Path | str | None], log: ProblemLog, known: set[str]
) -> ImageRecord:
    path = resolve_image(rec.name, search_dirs, log, file, rec.item, field=rec.name_field)
    sha = ""
    width, height = rec.size or (0, 0)
    if path is not None:
        try:
            file_w, file_h, sha = inspect_image(path)
        except UnreadableImageError as exc:
            log.error(file, rec.item, rec.name_field, str(exc))
            path = None
        else:
            if rec.size is not None and rec.size != (file_w, file_h):
                log.warning(
                    file,
                    rec.item,
                    rec.size_field,
                    f"annotated size {rec.size[0]}x{rec.size[1]} disagrees with the image file "
                    f"{file_w}x{file_h}; using the file's",
                )
            width, height = file_w, file_h
    boxes: list[Box] = []
    seen: dict[tuple[float, float, float, float, str], str] = {}
    for raw in rec.boxes:
        if raw.label not in known:
            log.error(
                file,
                raw.item or rec.item,
                raw.label_field or raw.field,
                f"unknown tag {raw.label!r} (known: {', '.join(sorted(known))}); box dropped",
            )
            continue
        box = check_box(raw, width=width, height=height, log=log, file=file, item=rec.item)
        if box is None:
            continue
        key = (box.x1, box.y1, box.x2, box.y2, box.label)
        if key in seen:
            log.warning(
                file,
                raw.item or rec.item,
                raw.field,
                f"exact duplicate of {seen[key]} ({box.label} {box.x1:g},{box.y1:g},{box.x2:g},{box.y2:g}); "
                "both kept",
            )
        else:
            seen[key] = raw.item or raw.field
        boxes.append(box)
    return ImageRecord(
        name=rec.name,
        width=int(width),
        height=int(height),
        boxes=tuple(boxes),
        path=path,
        sha256=sha,
        origin=Origin(file, rec.item),
        asset_id=rec.asset_id,
    )


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
