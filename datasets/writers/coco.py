"""COCO detection JSON writer: what pycocotools' evaluator and most training tools read.

Category ids are 1-based in ``class_names`` order (0 is background by convention), image ids are
1-based in set order, and ``bbox`` is ``[x, y, width, height]`` in 0-based float pixels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from datasets.model import AnnotatedSet


def coco_dict(aset: AnnotatedSet) -> dict[str, Any]:
    """The set as a COCO detection dictionary (``images``, ``annotations``, ``categories``)."""
    cat_ids = {name: i + 1 for i, name in enumerate(aset.class_names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, im in enumerate(aset.images, start=1):
        images.append({"id": image_id, "file_name": im.name, "width": im.width, "height": im.height})
        for box in im.boxes:
            if box.label not in cat_ids:
                raise ValueError(f"{im.name}: label {box.label!r} is not in class_names {aset.class_names}")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_ids[box.label],
                    "bbox": [box.x1, box.y1, box.width, box.height],
                    "area": box.area,
                    "iscrowd": 0,
                }
            )
    return {
        "info": {"description": aset.source or "steel inspection annotations"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "defect"} for n, i in cat_ids.items()],
    }


def write_coco(aset: AnnotatedSet, path: Path | str) -> Path:
    """Write ``aset`` as COCO JSON to ``path`` (replaced atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(coco_dict(aset), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path
