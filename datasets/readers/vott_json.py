"""VoTT JSON export reader (``vott-json-export/<name>-export.json``), see FORMAT-NOTES.md §5.

``assets`` maps an asset id to ``{asset, regions, version}``. A region's ``boundingBox`` is
``left, top, width, height`` in 0-based float source pixels, so ``xyxy = (left, top, left + width,
top + height)`` with no rounding. A region with several tags becomes one box per tag (VoTT's CSV and
VOC exports do the same); polygons and polylines become the bounding box of their points (warned);
video parents (``type`` 2) are skipped as VoTT's exports skip them.

Images are found by ``asset.name``, never by ``asset.path`` (that is the annotator's machine, and
``file:`` URLs must not be followed): in ``images_dir``, the export's folder, its ``images/``
subfolder, then the ``images/`` folder beside the export's folder (NEU-DET's ``vott/`` layout).
The per-asset parsing here is shared with the VoTT project reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets.model import AnnotatedSet
from datasets.problems import AnnotationError, Problem, ProblemLog
from datasets.readers.detect import export_file_in
from datasets.validate import (
    RawBox,
    RawRecord,
    build_set,
    image_size_value,
    load_json,
    number,
    repeated_keys,
)

_BOX_TYPES = ("RECTANGLE", "SQUARE")
_SHAPE_TYPES = ("POLYGON", "POLYLINE")
VIDEO_ASSET_TYPE = 2


def read_vott_json(
    path: Path | str,
    *,
    images_dir: Path | str | None = None,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
) -> AnnotatedSet:
    """Read a VoTT JSON export (or the folder holding exactly one ``*-export.json``).

    Class names default to the export's ``tags`` list (in its order). A whole-file problem (malformed
    JSON, no ``assets`` object) gives an empty set with the error reported, or raises in strict mode.
    """
    path = Path(path)
    if path.is_dir():
        path = export_file_in(path, "-export.json")
    if not path.is_file():
        raise AnnotationError(Problem("error", str(path), "", "", "no such file"))
    file = str(path)
    log = ProblemLog(strict=strict)
    search_dirs = [images_dir, path.parent, path.parent / "images", path.parent.parent / "images"]
    records: list[RawRecord] = []
    declared: list[str] | None = None
    ok, data = load_json(path, log, ids_at=("assets",))
    if ok and not isinstance(data, dict):
        log.error(file, "", "", f"top level is a JSON {type(data).__name__}, expected an object")
    elif ok and isinstance(data, dict):  # (the second test only tells the type checker)
        declared = parse_tags(data.get("tags"), log, file)
        assets = data.get("assets")
        if not isinstance(assets, dict):
            log.error(file, "", "assets", "missing or not an object of {asset id: {asset, regions}}")
        else:
            for key, meta in assets.items():
                rec = parse_asset_metadata(meta, key=key, file=file, log=log)
                if rec is not None:
                    records.append(rec)
            report_repeated_assets(assets, file=file, log=log)
    return build_set(
        records,
        file=file,
        search_dirs=search_dirs,
        log=log,
        class_names=class_names,
        declared_names=declared,
        source=file,
        format="vott-json",
    )


def report_repeated_assets(assets: dict[str, object], *, file: str, log: ProblemLog) -> None:
    """An error per asset id that the ``assets`` object holds more than once (the first entry is kept).

    Asset ids are VoTT's keys for images; a repeat is a hand edit or a bad merge of two exports, and
    JSON would otherwise keep the last entry and drop the first without a word.
    """
    for key, later in repeated_keys(assets):
        first = _asset_name(assets[key])
        item = f"{key} ({_asset_name(later)})"
        log.error(
            file,
            item,
            f"assets[{key!r}]",
            f"asset id {key!r} appears more than once (first for {first}); this entry skipped",
        )


def _asset_name(meta: object) -> str:
    """The image name of an export entry (``{asset: {name}}``) or a project asset (``{name}``)."""
    if isinstance(meta, dict):
        inner = meta.get("asset", meta)
        name = inner.get("name") if isinstance(inner, dict) else None
        if isinstance(name, str) and name:
            return name[:80]
    return "an entry without a name"


def parse_tags(tags: object, log: ProblemLog, file: str) -> list[str] | None:
    """Tag names from a project's ``tags`` list of ``{name, color}`` (None when absent or empty)."""
    if tags is None:
        return None
    if not isinstance(tags, list):
        log.warning(file, "", "tags", "not a list; class names will come from the regions")
        return None
    names: list[str] = []
    for i, tag in enumerate(tags):
        name = tag.get("name") if isinstance(tag, dict) else None
        if not isinstance(name, str) or not name.strip():
            log.warning(file, "", f"tags[{i}].name", f"tag without a usable name: {str(tag)[:60]}; ignored")
            continue
        names.append(name)
    return names or None


def parse_asset_metadata(meta: object, *, key: str, file: str, log: ProblemLog) -> RawRecord | None:
    """One ``{asset, regions, version}`` entry as a raw record, or None when it must be skipped.

    Args:
        meta: the entry (``assets[key]`` of an export, or a whole ``-asset.json`` file).
        key: the asset id it is stored under (used in messages and as ``asset_id``).
        file: the file named in problems.
    """
    if not isinstance(meta, dict):
        log.error(file, key, "", "asset entry is not an object; skipped")
        return None
    asset = meta.get("asset")
    if not isinstance(asset, dict):
        log.error(file, key, "asset", "missing or not an object; asset skipped")
        return None
    name = asset.get("name")
    if not isinstance(name, str) or not name.strip():
        log.error(file, key, "asset.name", f"missing or empty asset name ({str(name)[:40]}); asset skipped")
        return None
    item = f"{key} ({name})"
    if asset.get("type") == VIDEO_ASSET_TYPE:
        log.warning(
            file, item, "asset.type", "video asset (type 2) skipped: VoTT exports its frames, not the video"
        )
        return None
    asset_id = asset.get("id")
    if asset_id != key:
        log.warning(
            file, item, "asset.id", f"asset id {str(asset_id)[:40]!r} differs from its key; using the key"
        )
    size = asset.get("size")
    if isinstance(size, dict):
        size = image_size_value(size.get("width"), size.get("height"), log, file, item, "asset.size")
    elif size is not None:
        log.warning(file, item, "asset.size", f"not an object: {str(size)[:40]}; ignored")
        size = None
    regions = meta.get("regions")
    if not isinstance(regions, list):
        log.error(file, item, "regions", "missing or not a list; asset skipped")
        return None
    rec = RawRecord(
        name=name, item=item, size=size, size_field="asset.size", name_field="asset.name", asset_id=key
    )
    for i, region in enumerate(regions):
        rec.boxes.extend(parse_region(region, index=i, file=file, item=item, log=log))
    return rec


def parse_region(region: object, *, index: int, file: str, item: str, log: ProblemLog) -> list[RawBox]:
    """One VoTT region as one raw box per tag (an empty list when the region is unusable)."""
    where = f"regions[{index}]"
    if not isinstance(region, dict):
        log.error(file, item, where, "region is not an object; dropped")
        return []
    rid = region.get("id")
    rname = f"region {rid}" if isinstance(rid, str) and rid else f"region #{index}"
    tags = region.get("tags")
    if not isinstance(tags, list):
        log.error(file, item, f"{where}.tags", f"{rname} has no tags list; dropped")
        return []
    if not tags:
        log.error(file, item, f"{where}.tags", f"{rname} has no tags; dropped")
        return []
    kind = region.get("type", "RECTANGLE")
    if kind in _SHAPE_TYPES:
        xyxy = _points_box(region.get("points"), f"{where}.points", file, item, log)
        if xyxy is not None:
            log.warning(file, item, f"{where}.type", f"{rname} is a {kind}; using its points' bounding box")
        field = f"{where}.points"
    elif kind in _BOX_TYPES:
        xyxy = _bounding_box(region.get("boundingBox"), f"{where}.boundingBox", file, item, log)
        field = f"{where}.boundingBox"
    else:
        log.error(file, item, f"{where}.type", f"{rname} has unsupported type {str(kind)[:40]!r}; dropped")
        return []
    if xyxy is None:
        return []
    boxes = []
    for j, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag.strip():
            log.error(
                file, item, f"{where}.tags[{j}]", f"{rname} has an unusable tag {str(tag)[:40]!r}; dropped"
            )
            continue
        boxes.append(RawBox(*xyxy, label=tag, field=field, label_field=f"{where}.tags[{j}]"))
    return boxes


def _bounding_box(
    bb: object, field: str, file: str, item: str, log: ProblemLog
) -> tuple[float, float, float, float] | None:
    if not isinstance(bb, dict):
        log.error(file, item, field, "missing or not an object; region dropped")
        return None
    values = [number(bb.get(k), log, file, item, f"{field}.{k}") for k in ("left", "top", "width", "height")]
    if any(v is None for v in values):
        return None
    left, top, width, height = (float(v) for v in values)  # type: ignore[arg-type]
    return left, top, left + width, top + height


def _points_box(
    points: object, field: str, file: str, item: str, log: ProblemLog
) -> tuple[float, float, float, float] | None:
    if not isinstance(points, list) or not points:
        log.error(file, item, field, "missing or empty points list; region dropped")
        return None
    xs: list[float] = []
    ys: list[float] = []
    for k, point in enumerate(points):
        if not isinstance(point, dict):
            log.error(file, item, f"{field}[{k}]", "point is not an object; region dropped")
            return None
        x = number(point.get("x"), log, file, item, f"{field}[{k}].x")
        y = number(point.get("y"), log, file, item, f"{field}[{k}].y")
        if x is None or y is None:
            return None
        xs.append(x)
        ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)
