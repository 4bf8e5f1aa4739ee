"""VoTT JSON export writer: a file VoTT's own JSON export could have produced (FORMAT-NOTES.md §5).

Boxes become RECTANGLE regions with ``boundingBox = {height, width, left, top}`` (unrounded floats) and
the four corner ``points``. Boxes with identical coordinates and different labels are written as one
region with several tags, as VoTT stores them; a repeated label (an exact duplicate box) gets its own
region, so reading the file back gives exactly the boxes written. Ids are derived from names with
MD5 (asset ids, like VoTT) so writing the same set twice gives the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from datasets.images import unsafe_name_reason
from datasets.model import AnnotatedSet, Box, ImageRecord
from datasets.palette import class_colour

VOTT_VERSION = "2.2.0"


def _short_id(text: str) -> str:
    """A 9-character id (the length of VoTT's shortid ids), stable for the same text."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:9]


def asset_id_for(im: ImageRecord) -> str:
    """The record's own VoTT asset id if any, else MD5 of its name (VoTT hashes a path the same way)."""
    return im.asset_id or hashlib.md5(im.name.encode("utf-8")).hexdigest()


def _regions(im: ImageRecord, asset_id: str) -> list[dict[str, Any]]:
    groups: list[tuple[Box, list[str]]] = []
    for box in im.boxes:
        for first, tags in groups:
            if first.xyxy == box.xyxy and box.label not in tags:
                tags.append(box.label)
                break
        else:
            groups.append((box, [box.label]))
    regions = []
    for k, (box, tags) in enumerate(groups):
        regions.append(
            {
                "id": _short_id(f"{asset_id}/{k}"),
                "type": "RECTANGLE",
                "tags": tags,
                "boundingBox": {"height": box.height, "width": box.width, "left": box.x1, "top": box.y1},
                "points": [
                    {"x": box.x1, "y": box.y1},
                    {"x": box.x2, "y": box.y1},
                    {"x": box.x2, "y": box.y2},
                    {"x": box.x1, "y": box.y2},
                ],
            }
        )
    return regions


def _file_url(path: Path) -> str:
    """``file:`` URL the way VoTT encodes local paths (forward slashes, ``#`` and ``?`` escaped)."""
    return "file:" + quote(path.resolve().as_posix(), safe="/:;,@&=+$-_.!~*'()")


def vott_export_dict(
    aset: AnnotatedSet, *, project_name: str, image_paths: dict[str, Path] | None = None
) -> dict[str, Any]:
    """The export as a dictionary; ``image_paths`` overrides where ``asset.path`` points (copied images)."""
    known = set(aset.class_names)
    assets: dict[str, dict[str, Any]] = {}
    for im in aset.images:
        bad = [b.label for b in im.boxes if b.label not in known]
        if bad:
            raise ValueError(f"{im.name}: label {bad[0]!r} is not in class_names {aset.class_names}")
        asset_id = asset_id_for(im)
        if asset_id in assets:
            raise ValueError(
                f"{im.name}: asset id {asset_id} already used by {assets[asset_id]['asset']['name']}"
            )
        path = (image_paths or {}).get(im.name, im.path)
        asset = {
            "format": Path(im.name).suffix.lstrip(".").lower(),
            "id": asset_id,
            "name": im.name,
            "path": _file_url(path) if path is not None else im.name,
            "size": {"width": im.width, "height": im.height} if im.width > 0 and im.height > 0 else None,
            "state": 2 if im.boxes else 1,
            "type": 1,
        }
        assets[asset_id] = {"asset": asset, "regions": _regions(im, asset_id), "version": VOTT_VERSION}
    return {
        "name": project_name,
        "securityToken": f"{project_name} Token",
        "videoSettings": {"frameExtractionRate": 15},
        "tags": [{"name": n, "color": class_colour(n)} for n in aset.class_names],
        "id": _short_id(project_name),
        "activeLearningSettings": {"autoDetect": False, "predictTag": True, "modelPathType": "coco"},
        "version": VOTT_VERSION,
        "lastVisitedAssetId": next(reversed(assets), ""),
        "assets": assets,
    }


def write_vott_json(
    aset: AnnotatedSet, path: Path | str, *, project_name: str = "steel-inspection", copy_images: bool = False
) -> Path:
    """Write ``aset`` as a VoTT JSON export; returns the file written.

    Args:
        aset: the set to write.
        path: the ``.json`` file, or an existing folder (then ``<project name>-export.json`` inside it,
            whitespace replaced by ``-`` as VoTT does).
        project_name: the project's ``name``.
        copy_images: copy each image file beside the export under its ``asset.name`` (VoTT's
            ``includeImages``), so the export folder is self-contained; images without a path are skipped.
    """
    path = Path(path)
    if path.is_dir():
        path = path / (re.sub(r"\s", "-", project_name) + "-export.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    copied: dict[str, Path] = {}
    if copy_images:
        for im in aset.images:
            if im.path is None:
                continue
            reason = unsafe_name_reason(im.name)
            if reason is not None:
                raise ValueError(f"{im.name!r}: {reason}; cannot copy the image beside the export")
            target = path.parent / im.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (target.exists() and target.samefile(im.path)):
                shutil.copyfile(im.path, target)
            copied[im.name] = target
    data = vott_export_dict(aset, project_name=project_name, image_paths=copied)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=4), encoding="utf-8")
    os.replace(tmp, path)
    return path
