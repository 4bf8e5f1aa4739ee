"""YOLO txt writer: one ``<stem>.txt`` per image plus ``classes.txt``.

Each line is ``class_index cx cy w h`` with the box centre and size normalised by the image's width
and height (6 decimals, ~0.0002 px on a 200 px image). An image without boxes still gets an empty
file, which YOLO tools read as a negative (defect-free) sample.
"""

from __future__ import annotations

from pathlib import Path

from datasets.model import AnnotatedSet, ImageRecord


def yolo_lines(im: ImageRecord, class_index: dict[str, int]) -> list[str]:
    """The label lines of one image; its width and height must be known (> 0)."""
    if im.width <= 0 or im.height <= 0:
        raise ValueError(
            f"{im.name}: image size unknown ({im.width}x{im.height}); YOLO needs it to normalise"
        )
    lines = []
    for box in im.boxes:
        if box.label not in class_index:
            raise ValueError(f"{im.name}: label {box.label!r} is not in class_names {tuple(class_index)}")
        cx = (box.x1 + box.x2) / 2 / im.width
        cy = (box.y1 + box.y2) / 2 / im.height
        w, h = box.width / im.width, box.height / im.height
        lines.append(f"{class_index[box.label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def write_yolo(aset: AnnotatedSet, out_dir: Path | str) -> Path:
    """Write one ``<stem>.txt`` per image and ``classes.txt`` (one name per line) into ``out_dir``."""
    out = Path(out_dir)
    class_index = {name: i for i, name in enumerate(aset.class_names)}
    stems: dict[str, str] = {}
    texts: dict[str, str] = {}
    for im in aset.images:
        stem = Path(im.name).stem
        if stem in stems or stem == "classes":
            other = stems.get(stem, "classes.txt")
            raise ValueError(f"{im.name}: its label file {stem}.txt would overwrite the one of {other}")
        stems[stem] = im.name
        lines = yolo_lines(im, class_index)
        texts[stem] = "".join(line + "\n" for line in lines)
    out.mkdir(parents=True, exist_ok=True)
    for stem, text in texts.items():
        (out / f"{stem}.txt").write_text(text, encoding="utf-8")
    (out / "classes.txt").write_text("".join(n + "\n" for n in aset.class_names), encoding="utf-8")
    return out
