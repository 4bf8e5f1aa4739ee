"""Annotation readers: every supported format becomes one :class:`~datasets.model.AnnotatedSet`.

``read_dataset`` is the entry point; each format has its own module (``voc``, ``vott_json``,
``vott_project``, ``vott_csv``, ``coco``) that only parses, and ``datasets.validate`` applies the
shared checks, so problems read the same whatever the format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets.model import AnnotatedSet
from datasets.readers.coco import read_coco
from datasets.readers.detect import FORMATS, detect_format
from datasets.readers.voc import VocConvention, read_voc
from datasets.readers.vott_csv import read_vott_csv
from datasets.readers.vott_json import read_vott_json
from datasets.readers.vott_project import read_vott_project

__all__ = ["FORMATS", "detect_format", "read_dataset"]


def read_dataset(
    path: Path | str,
    *,
    format: str = "auto",
    images_dir: Path | str | None = None,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
    voc_convention: VocConvention = "auto",
) -> AnnotatedSet:
    """Read annotations in any supported format.

    Args:
        path: the annotation file or folder (``annotations/``, ``*-export.json``, ``*-export.csv``,
            a VoTT project folder or ``.vott`` file, a COCO ``.json``).
        format: ``"auto"`` (see :func:`detect_format`) or one of :data:`FORMATS`.
        images_dir: searched first for image files; each format also has its own usual places.
        class_names: the allowed labels (boxes with others are errors). None = from the file (VoTT tags,
            COCO categories) or, for VOC/CSV, NEU-DET's classes if every label is one, else those seen.
        strict: raise :class:`~datasets.problems.AnnotationError` on the first error; by default the
            bad record or box is skipped and reported in ``problems``.
        voc_convention: ``"auto"``, ``"one-based"`` or ``"zero-based"`` (VOC only; see ``readers.voc``).

    Raises:
        AnnotationError: strict mode and a problem, or a path that does not exist / cannot be recognised.
        ValueError: an unknown ``format``.
    """
    if format == "auto":
        format = detect_format(path)
    if format == "voc":
        return read_voc(
            path, convention=voc_convention, images_dir=images_dir, class_names=class_names, strict=strict
        )
    if format == "vott-json":
        return read_vott_json(path, images_dir=images_dir, class_names=class_names, strict=strict)
    if format == "vott-project":
        return read_vott_project(path, images_dir=images_dir, class_names=class_names, strict=strict)
    if format == "vott-csv":
        return read_vott_csv(path, images_dir=images_dir, class_names=class_names, strict=strict)
    if format == "coco":
        return read_coco(path, images_dir=images_dir, class_names=class_names, strict=strict)
    raise ValueError(f"unknown annotation format {format!r}; expected 'auto' or one of {FORMATS}")
