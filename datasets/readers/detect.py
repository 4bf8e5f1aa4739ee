"""Telling annotation formats apart from a path, cheaply and without guessing from file contents alone.

Names decide first (VoTT writes ``*-export.json``, ``*-export.csv``, ``*.vott`` and ``*-asset.json``);
only an unnamed ``.json`` is opened to tell a VoTT export (``assets`` of ``{asset, regions}``) from COCO
(``images`` + ``annotations``). A folder is VOC when it holds ``.xml`` files or an ``annotations/`` folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from datasets.problems import AnnotationError, Problem

FORMATS: tuple[str, ...] = ("voc", "vott-json", "vott-project", "vott-csv", "coco")


def _fail(path: Path, message: str) -> AnnotationError:
    return AnnotationError(Problem("error", str(path), "", "", message))


def detect_format(path: Path | str) -> str:
    """One of :data:`FORMATS` for ``path`` (a file or folder).

    Raises:
        AnnotationError: the path does not exist, or nothing recognisable is there.
    """
    path = Path(path)
    if path.is_dir():
        return _detect_dir(path)
    if not path.is_file():
        raise _fail(path, "no such file or folder")
    name = path.name.lower()
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return "voc"
    if suffix == ".vott" or name.endswith("-asset.json"):
        return "vott-project"
    if suffix == ".csv":
        return "vott-csv"
    if name.endswith("-export.json"):
        return "vott-json"
    if suffix == ".json":
        return _detect_json(path)
    raise _fail(path, f"cannot tell the annotation format of a {suffix or 'suffix-less'} file")


def _detect_dir(path: Path) -> str:
    names = [p.name.lower() for p in path.iterdir()]
    if any(n.endswith(".vott") for n in names) or any(n.endswith("-asset.json") for n in names):
        return "vott-project"
    if any(n.endswith(".xml") for n in names) or "annotations" in names:
        return "voc"
    if any(n.endswith("-export.json") for n in names):
        return "vott-json"
    if any(n.endswith("-export.csv") for n in names):
        return "vott-csv"
    raise _fail(path, "no VOC .xml, VoTT (.vott, -asset.json, -export.json, -export.csv) or COCO file found")


def _detect_json(path: Path) -> str:
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise _fail(path, f"malformed JSON, cannot tell its format: {exc}") from None
    if isinstance(data, dict):
        assets = data.get("assets")
        if isinstance(assets, dict):
            return "vott-json"
        if isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list):
            return "coco"
        if isinstance(data.get("asset"), dict) and "regions" in data:
            return "vott-project"
    raise _fail(path, "JSON is neither a VoTT export (assets) nor COCO (images, annotations)")


def export_file_in(folder: Path, suffix: str) -> Path:
    """The single ``*<suffix>`` file in ``folder`` (e.g. ``-export.json``); an error if none or several."""
    found = sorted(p for p in folder.iterdir() if p.name.lower().endswith(suffix) and p.is_file())
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise _fail(folder, f"{what} *{suffix} files here; name the file to read")
    return found[0]
