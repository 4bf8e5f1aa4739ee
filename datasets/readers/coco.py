"""COCO detection JSON reader: ``images``, ``categories`` and ``annotations`` with ``bbox = [x, y, w, h]``.

COCO boxes are 0-based float pixels like ours, so ``xyxy = (x, y, x + width, y + height)``.
Segmentations, ``iscrowd`` and ``area`` are ignored (we only train boxes). Class names default to the
categories in file order. Images are found by ``file_name`` (which may hold a relative subfolder) in
``images_dir``, the JSON's folder, its ``images/`` subfolder and the ``images/`` folder beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets.model import AnnotatedSet
from datasets.problems import AnnotationError, Problem, ProblemLog
from datasets.validate import RawBox, RawRecord, build_set, image_size_value, load_json, number


def read_coco(
    path: Path | str,
    *,
    images_dir: Path | str | None = None,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
) -> AnnotatedSet:
    """Read a COCO detection JSON file (a whole-file problem gives an empty set and an error)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(Problem("error", str(path), "", "", "no such file"))
    file = str(path)
    log = ProblemLog(strict=strict)
    declared: list[str] | None = None
    records: list[RawRecord] = []
    ok, data = load_json(path, log)
    if ok and isinstance(data, dict) and _is_coco(data):
        categories = _categories(data.get("categories"), file, log)
        declared = list(dict.fromkeys(categories.values())) or None
        by_id = _images(data["images"], file, log)
        _annotations(data["annotations"], by_id, categories, file, log)
        records = list(by_id.values())
    elif ok:
        log.error(file, "", "", "not COCO: expected an object with 'images' and 'annotations' lists")
    return build_set(
        records,
        file=file,
        search_dirs=[images_dir, path.parent, path.parent / "images", path.parent.parent / "images"],
        log=log,
        class_names=class_names,
        declared_names=declared,
        source=file,
        format="coco",
    )


def _categories(cats: object, file: str, log: ProblemLog) -> dict[object, str]:
    if not isinstance(cats, list):
        log.error(file, "", "categories", "missing or not a list; every annotation will be unknown")
        return {}
    out: dict[object, str] = {}
    for i, cat in enumerate(cats):
        cid = cat.get("id") if isinstance(cat, dict) else None
        name = cat.get("name") if isinstance(cat, dict) else None
        if not _is_id(cid) or not isinstance(name, str) or not name:
            log.error(file, f"categories[{i}]", "", "category needs an id and a name; skipped")
            continue
        if cid in out:
            log.error(file, f"categories[{i}]", "id", f"duplicate category id {cid!r}; skipped")
            continue
        out[cid] = name
    return out


def _images(images: list[object], file: str, log: ProblemLog) -> dict[object, RawRecord]:
    out: dict[object, RawRecord] = {}
    for i, im in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(im, dict):
            log.error(file, where, "", "image entry is not an object; skipped")
            continue
        iid, name = im.get("id"), im.get("file_name")
        if not _is_id(iid):
            log.error(file, where, "id", f"missing or unusable image id {str(iid)[:40]}; skipped")
            continue
        if not isinstance(name, str) or not name.strip():
            log.error(file, where, "file_name", "missing file_name; skipped")
            continue
        if iid in out:
            log.error(file, where, "id", f"duplicate image id {iid!r}; skipped")
            continue
        item = f"image {iid} ({name})"
        size = image_size_value(im.get("width"), im.get("height"), log, file, item, where)
        out[iid] = RawRecord(
            name=name, item=item, size=size, size_field=where, name_field=f"{where}.file_name"
        )
    return out


def _annotations(
    anns: list[object],
    images: dict[object, RawRecord],
    categories: dict[object, str],
    file: str,
    log: ProblemLog,
) -> None:
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            log.error(file, where, "", "annotation is not an object; skipped")
            continue
        image_id = ann.get("image_id")
        rec = images.get(image_id) if _is_id(image_id) else None
        if rec is None:
            log.error(file, where, "image_id", f"no image with id {str(image_id)[:40]}; annotation skipped")
            continue
        cat = ann.get("category_id")
        label = categories.get(cat) if _is_id(cat) else None
        if label is None:
            log.error(
                file, rec.item, f"{where}.category_id", f"unknown category {str(cat)[:40]}; box dropped"
            )
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            log.error(file, rec.item, f"{where}.bbox", "expected [x, y, width, height]; box dropped")
            continue
        values = [number(v, log, file, rec.item, f"{where}.bbox[{k}]") for k, v in enumerate(bbox)]
        if any(v is None for v in values):
            continue
        x, y, w, h = (float(v) for v in values)  # type: ignore[arg-type]
        rec.boxes.append(
            RawBox(x, y, x + w, y + h, label, field=f"{where}.bbox", label_field=f"{where}.category_id")
        )


def _is_coco(data: dict[str, object]) -> bool:
    return isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)


def _is_id(value: object) -> bool:
    """COCO ids are integers (strings are tolerated); JSON ``true`` is not an id, though Python's
    ``True == 1`` would find image 1 with it."""
    return isinstance(value, int | str) and not isinstance(value, bool)
