"""The one internal model of an annotated image set.

Every reader returns an :class:`AnnotatedSet`; every writer, the torch ``Dataset``, the audit and
the trainer consume it. Boxes are 0-based float pixels ``x1, y1, x2, y2`` (``x2``/``y2`` exclusive,
so ``width = x2 - x1``): the convention of VoTT and COCO. Format-specific conversions live in the
readers, never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datasets.problems import Problem

NEU_DET_CLASSES: tuple[str, ...] = (
    "crazing",
    "inclusion",
    "patches",
    "pitted_surface",
    "rolled-in_scale",
    "scratches",
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from: the annotation file and the item inside it (asset id, name, row)."""

    file: str
    item: str = ""


@dataclass(frozen=True, slots=True)
class Box:
    """One labelled box in 0-based float pixels (``xyxy``; ``x2``/``y2`` exclusive)."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image and its boxes. Zero boxes is legal (defect-free steel).

    ``path`` is ``None`` when the image could not be found (the problem is reported separately);
    ``width``/``height`` come from the annotation and are checked against the file when it exists.
    ``sha256`` is the hex digest of the file's bytes (empty when the file is missing).
    """

    name: str
    width: int
    height: int
    boxes: tuple[Box, ...] = ()
    path: Path | None = None
    sha256: str = ""
    origin: Origin = field(default_factory=lambda: Origin(""))
    asset_id: str = ""

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    def found_path(self) -> Path:
        """``path`` for code that only sees images whose file was found; a clear error naming the image
        otherwise (the reader reported the missing file already)."""
        if self.path is None:
            raise ValueError(f"{self.name}: image file not found (record has no path)")
        return self.path


@dataclass(slots=True)
class AnnotatedSet:
    """An annotated image set: images in a stable order, the class names, and what went wrong reading it."""

    images: list[ImageRecord]
    class_names: tuple[str, ...]
    problems: list[Problem] = field(default_factory=list)
    source: str = ""
    format: str = ""

    @property
    def num_boxes(self) -> int:
        return sum(len(im.boxes) for im in self.images)

    def per_class(self) -> dict[str, int]:
        """Box count per class name, every known class present (zero included)."""
        counts = {name: 0 for name in self.class_names}
        for im in self.images:
            for box in im.boxes:
                counts[box.label] = counts.get(box.label, 0) + 1
        return counts

    def by_name(self) -> dict[str, ImageRecord]:
        return {im.name: im for im in self.images}

    def subset(self, names: set[str] | list[str]) -> AnnotatedSet:
        """The images whose names are in ``names``, keeping this set's order and class names."""
        wanted = set(names)
        return AnnotatedSet(
            images=[im for im in self.images if im.name in wanted],
            class_names=self.class_names,
            problems=[],
            source=self.source,
            format=self.format,
        )
