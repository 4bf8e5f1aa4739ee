"""Annotation writers: an :class:`~datasets.model.AnnotatedSet` out to COCO, YOLO txt or a VoTT JSON export.

Writers never drop a box silently: a label outside the set's ``class_names`` or an image without a
known size (where the format needs one) is a ``ValueError`` naming the image.
"""

from datasets.writers.coco import write_coco
from datasets.writers.vott_json import write_vott_json
from datasets.writers.yolo import write_yolo

__all__ = ["write_coco", "write_vott_json", "write_yolo"]
