"""What ``steel pseudo-label`` does: score a split's training side with a teacher bundle and write the
set with the teacher's confident new boxes as COCO JSON (what ``data.path`` of a training recipe reads),
with a report of what was added beside it."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from datasets.detections import Detections
from datasets.split import apply_split, read_split
from datasets.writers.coco import write_coco
from training.bundle import load_bundle
from training.evaluate_cli import read_labelled
from training.inference import Predictor, read_image
from training.pseudo_labels import PseudoLabelReport, PseudoLabelRule, with_pseudo_labels


def report_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}.report.json")


def run_pseudo_labels(
    *,
    teacher: Path,
    data: Path,
    split: Path,
    out: Path,
    rule: PseudoLabelRule,
    format: str = "auto",
    images: Path | None = None,
    device: str = "auto",
    show_progress: bool = True,
) -> PseudoLabelReport:
    """Write ``out`` (every image of ``data``, the training side with pseudo-labels) and its report."""
    bundle = load_bundle(teacher)
    aset = read_labelled(data, format=format, images=images, class_names=bundle.class_names)
    train, _ = apply_split(aset, read_split(split))
    # The rule's score is the predictor's threshold for every class (it wins over the operating point).
    predictor = Predictor(bundle, device=device, score_threshold=rule.min_score)
    detections: dict[str, Detections] = {}
    records = train.images
    for start in tqdm(range(0, len(records), 32), desc="teacher", disable=not show_progress, leave=False):
        chunk = records[start : start + 32]
        found = predictor([read_image(str(r.found_path())) for r in chunk])
        detections.update((r.name, det) for r, det in zip(chunk, found, strict=True))
    labelled, report = with_pseudo_labels(
        aset, {r.name for r in records}, detections, rule, teacher=bundle.version
    )
    write_coco(labelled, out)
    report_path(out).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return report


def report_lines(report: PseudoLabelReport) -> list[str]:
    """The report as the command prints it: one line per class, then the totals."""
    lines = [f"teacher {report.teacher}; boxes at score >= {report.rule.min_score}, IoU < "
             f"{report.rule.max_iou} with every annotated box"]  # fmt: skip
    for name, n in report.added.items():
        lines.append(f"  {name:16s} annotated {report.annotated[name]:5d}  added {n:5d}")
    lines.append(
        f"{sum(report.added.values())} boxes added to {report.images_changed} of {report.train_images} "
        "training images; validation images unchanged"
    )
    return lines
