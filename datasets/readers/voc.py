"""Pascal VOC XML reader: NEU-DET's ``annotations/`` and VoTT's ``Annotations/`` + ``JPEGImages/`` export.

Two coordinate conventions live under the same schema, decided per file:

- **one-based** (the VOC devkit, NEU-DET): integer pixels, 1-based and inclusive, so
  ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``;
- **zero-based** (VoTT's Pascal VOC export): unrounded 0-based float offsets, used unchanged.

With ``convention="auto"`` a file is zero-based when it carries VoTT's fingerprints
(``<annotation verified="yes">`` or ``<folder>Annotation</folder>``) or any coordinate is not an integer;
otherwise it is one-based. ``<depth>`` is ignored (NEU-DET says 1 for 3-channel JPEGs). A ``<filename>``
without an image extension (174 NEU-DET files) is completed from the image folder, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from datasets.images import IMAGE_EXTENSIONS, find_with_extension, unsafe_name_reason
from datasets.model import AnnotatedSet
from datasets.problems import AnnotationError, Problem, ProblemLog
from datasets.validate import RawBox, RawRecord, build_set, image_size_value, number

VocConvention = Literal["auto", "one-based", "zero-based"]
CONVENTIONS: tuple[str, ...] = ("auto", "one-based", "zero-based")
_COORDS = ("xmin", "ymin", "xmax", "ymax")


def locate_voc(path: Path) -> tuple[list[Path], Path]:
    """The XML files to read (sorted) and the folder they live in, for a file, an XML folder or a VOC root."""
    if path.is_file():
        return [path], path.parent
    if not path.is_dir():
        raise AnnotationError(Problem("error", str(path), "", "", "no such file or folder"))
    xmls = sorted(p for p in path.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
    if xmls:
        return xmls, path
    for sub in ("Annotations", "annotations"):
        if (path / sub).is_dir():
            return locate_voc(path / sub)
    return [], path


def voc_image_dirs(ann_dir: Path, images_dir: Path | str | None) -> list[Path | None]:
    """Where VOC images live: the option, NEU's ``../images``, VoTT's ``../JPEGImages``, the XML folder."""
    return [
        Path(images_dir) if images_dir is not None else None,
        ann_dir.parent / "images",
        ann_dir.parent / "JPEGImages",
        ann_dir,
    ]


def read_voc(
    path: Path | str,
    *,
    images_dir: Path | str | None = None,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
    convention: VocConvention = "auto",
) -> AnnotatedSet:
    """Read a Pascal VOC XML file, a folder of them, or a VOC root holding ``Annotations/``.

    Args:
        path: an ``.xml`` file, a folder of ``.xml`` files, or a folder holding ``annotations/``
            or ``Annotations/``.
        images_dir: searched first for images; then ``../images``, ``../JPEGImages``, the XML folder.
        class_names: the allowed labels; None = NEU-DET's classes if every label is one, else those seen.
        strict: raise :class:`AnnotationError` on the first error instead of skipping and reporting.
        convention: ``"auto"`` (decide per file, see the module docstring), ``"one-based"`` or
            ``"zero-based"``.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    path = Path(path)
    log = ProblemLog(strict=strict)
    xml_files, ann_dir = locate_voc(path)
    if not xml_files:
        log.error(str(path), "", "", "no Pascal VOC .xml files found")
    search_dirs = voc_image_dirs(ann_dir, images_dir)
    records = [
        rec for xml in xml_files if (rec := parse_voc_file(xml, search_dirs, log, convention)) is not None
    ]
    return build_set(
        records,
        file=str(path),
        search_dirs=search_dirs,
        log=log,
        class_names=class_names,
        source=str(path),
        format="voc",
    )


def parse_voc_file(
    xml_path: Path, search_dirs: list[Path | None], log: ProblemLog, convention: VocConvention = "auto"
) -> RawRecord | None:
    """One XML file as a raw record (coordinates converted to 0-based), or None if unusable."""
    file = str(xml_path)
    try:
        root = SafeET.fromstring(xml_path.read_bytes())
    except (ParseError, DefusedXmlException, OSError, ValueError) as exc:
        log.error(file, "", "", f"malformed XML: {exc}; file skipped")
        return None
    if root.tag != "annotation":
        log.error(file, "", "", f"root element is <{root.tag}>, expected <annotation>; file skipped")
        return None
    name = _image_name(root, xml_path, search_dirs, log)
    size_el = root.find("size")
    size = None
    if size_el is not None:
        size = image_size_value(
            size_el.findtext("width"), size_el.findtext("height"), log, file, name, "size", text=True
        )
    zero_based = _is_zero_based(root) if convention == "auto" else convention == "zero-based"
    offset = 0.0 if zero_based else 1.0
    rec = RawRecord(name=name, item=name, size=size, name_field="filename", file=file)
    for i, obj in enumerate(root.findall("object")):
        where = f"object[{i}]"
        label = (obj.findtext("name") or "").strip()
        if not label:
            log.error(file, name, f"{where}.name", "missing object name (label); box dropped")
            continue
        bndbox = obj.find("bndbox")
        if bndbox is None:
            log.error(file, name, f"{where}.bndbox", "missing <bndbox>; box dropped")
            continue
        values = [
            number(bndbox.findtext(c), log, file, name, f"{where}.bndbox.{c}", text=True) for c in _COORDS
        ]
        if any(v is None for v in values):
            continue
        xmin, ymin, xmax, ymax = (float(v) for v in values)  # type: ignore[arg-type]
        rec.boxes.append(
            RawBox(xmin - offset, ymin - offset, xmax, ymax, label, f"{where}.bndbox", f"{where}.name")
        )
    return rec


def _image_name(root: Element, xml_path: Path, search_dirs: list[Path | None], log: ProblemLog) -> str:
    """``<filename>``, completed with the image's extension when it has none (warned)."""
    given = (root.findtext("filename") or "").strip()
    if given and (Path(given).suffix.lower() in IMAGE_EXTENSIONS or unsafe_name_reason(given)):
        return given  # an unsafe name is rejected when resolved, never swapped for a safe one
    for stem in dict.fromkeys(s for s in (given, xml_path.stem) if s):
        found = find_with_extension(stem, search_dirs)
        if found is not None:
            what = f"<filename> {given!r} has no image extension" if given else "<filename> is missing"
            log.warning(str(xml_path), found, "filename", f"{what}; using {found!r}")
            return found
    return given or xml_path.stem


def _is_zero_based(root: Element) -> bool:
    """VoTT's export fingerprints, or any non-integer coordinate, mean 0-based floats."""
    if root.get("verified") == "yes" or (root.findtext("folder") or "").strip() == "Annotation":
        return True
    for bndbox in root.iter("bndbox"):
        for c in _COORDS:
            text = (bndbox.findtext(c) or "").strip()
            try:
                if float(text) != int(float(text)):
                    return True
            except (ValueError, OverflowError):
                continue
    return False
