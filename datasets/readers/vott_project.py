"""VoTT project folder reader: ``<name>.vott`` plus one ``<asset id>-asset.json`` per tagged asset.

This is VoTT's *target* folder (FORMAT-NOTES.md §3), read without exporting first. The ``.vott`` file
gives the tags and the list of assets; each ``-asset.json`` holds ``{asset, regions, version}`` and
is parsed exactly like an entry of a JSON export. VoTT writes ``-asset.json`` only for Tagged
(state 2) assets, so a project asset without one is:

- Visited (state 1): an image with no boxes (legal: defect-free steel);
- Tagged (state 2): an error, its regions are lost, and it is skipped rather than shown as defect-free;
- Not visited (state 0 or missing): skipped with a warning, as VoTT's default "visited" export does.

Images are found by ``asset.name`` in ``images_dir``, the project folder and its ``images/`` sibling.
The source connection that would say where images live is encrypted in real projects, and
``asset.path`` (the annotator's machine) is never followed. A missing image is an error but its record
and boxes are kept with ``path=None`` (see ``datasets.validate``), so an audit of the SI-Aizu project,
whose images were not published, still counts its 17 boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets.model import AnnotatedSet
from datasets.problems import AnnotationError, Problem, ProblemLog
from datasets.readers.vott_json import (
    VIDEO_ASSET_TYPE,
    parse_asset_metadata,
    parse_tags,
    report_repeated_assets,
)
from datasets.validate import RawRecord, build_set, load_json

ASSET_SUFFIX = "-asset.json"
_TAGGED = 2
_VISITED = 1


def read_vott_project(
    path: Path | str,
    *,
    images_dir: Path | str | None = None,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
) -> AnnotatedSet:
    """Read a VoTT project folder (or its ``.vott`` file, or one ``-asset.json`` inside it).

    Class names default to the project's ``tags``; without a ``.vott`` file (warned), to those seen.
    """
    path = Path(path)
    if not path.exists():
        raise AnnotationError(Problem("error", str(path), "", "", "no such file or folder"))
    folder = path if path.is_dir() else path.parent
    log = ProblemLog(strict=strict)
    project_file = _project_file(path, folder, log)
    declared: list[str] | None = None
    listed: dict[str, dict[str, object]] = {}
    if project_file is not None:
        declared, listed = _read_project(project_file, log)
    asset_files = {p.name[: -len(ASSET_SUFFIX)]: p for p in sorted(folder.glob("*" + ASSET_SUFFIX))}
    records: list[RawRecord] = []
    for asset_id in [*listed, *(k for k in asset_files if k not in listed)]:
        rec = _record_for(asset_id, asset_files.get(asset_id), listed.get(asset_id), str(project_file), log)
        if rec is not None:
            records.append(rec)
    return build_set(
        records,
        file=str(project_file or folder),
        search_dirs=[images_dir, folder, folder / "images", folder.parent / "images"],
        log=log,
        class_names=class_names,
        declared_names=declared,
        source=str(folder),
        format="vott-project",
    )


def _project_file(path: Path, folder: Path, log: ProblemLog) -> Path | None:
    if path.suffix.lower() == ".vott":
        return path
    found = sorted(folder.glob("*.vott"))
    if len(found) > 1:
        raise AnnotationError(
            Problem("error", str(folder), "", "", f"{len(found)} .vott files here; name the one to read")
        )
    if not found:
        log.warning(str(folder), "", "", "no .vott project file; reading the -asset.json files alone")
        return None
    return found[0]


def _read_project(
    project_file: Path, log: ProblemLog
) -> tuple[list[str] | None, dict[str, dict[str, object]]]:
    """The project's tag names and its ``assets`` (id → IAsset); problems name the ``.vott`` file."""
    file = str(project_file)
    ok, data = load_json(project_file, log, ids_at=("assets",))
    if not ok:
        return None, {}
    if not isinstance(data, dict):
        log.error(file, "", "", f"top level is a JSON {type(data).__name__}, expected an object")
        return None, {}
    declared = parse_tags(data.get("tags"), log, file)
    assets = data.get("assets", {})
    if not isinstance(assets, dict):
        log.error(file, "", "assets", "not an object of {asset id: asset}; ignored")
        return declared, {}
    listed: dict[str, dict[str, object]] = {}
    for key, asset in assets.items():
        if not isinstance(asset, dict):
            log.error(file, key, f"assets[{key!r}]", "asset is not an object; skipped")
            continue
        listed[key] = asset
    report_repeated_assets(assets, file=file, log=log)
    return declared, listed


def _record_for(
    asset_id: str,
    asset_file: Path | None,
    listed: dict[str, object] | None,
    project_file: str,
    log: ProblemLog,
) -> RawRecord | None:
    """The record for one asset id, from its ``-asset.json`` or, when it has none, from the project entry."""
    if asset_file is not None:
        ok, meta = load_json(asset_file, log)
        if not ok:
            return None
        rec = parse_asset_metadata(meta, key=asset_id, file=str(asset_file), log=log)
        if rec is not None:
            rec.file = str(asset_file)
        return rec
    assert listed is not None  # ids come from the project or from a file
    name = listed.get("name")
    item = f"{asset_id} ({name})" if isinstance(name, str) else asset_id
    state = listed.get("state")
    if listed.get("type") == VIDEO_ASSET_TYPE:
        log.warning(project_file, item, "type", "video asset (type 2) skipped: VoTT exports its frames")
        return None
    if state == _TAGGED:
        log.error(project_file, item, "state", f"tagged asset has no {asset_id}{ASSET_SUFFIX}; skipped")
        return None
    if state != _VISITED:
        log.warning(project_file, item, "state", f"asset never visited (state {state!r}); skipped")
        return None
    return parse_asset_metadata({"asset": listed, "regions": []}, key=asset_id, file=project_file, log=log)
