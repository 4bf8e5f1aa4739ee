"""A seeded inspection database for the retraining tests: real NEU-DET images stored as the daemon stores
frames (raw pixels, frame and defect rows), operators' reviews, and a champion that detects nothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from datasets.model import NEU_DET_CLASSES
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT
from datasets.split import apply_split, read_split
from inspection.retrain.config import RetrainConfig, load_retrain_config
from inspection.sources.strip_sim import StripSimulator
from inspection.storage.db import default_sqlite_url, upgrade
from inspection.storage.frames import record_frame
from inspection.storage.model_registry import activate_model, active_model, register_model_version
from inspection.storage.paths import raw_frame_path
from inspection.storage.records import DefectRecord, FrameRecord
from inspection.storage.repository import Repository
from inspection.storage.reviews import add_review
from inspection.storage.schema import Defect, Frame, ModelVersion, RetrainRun, Review
from training.bundle import load_bundle, save_bundle
from training.config import ModelConfig
from training.models.yolo.model import YoloConfig
from training.registry import build_model

SPLIT = REPO_ROOT / "configs" / "splits" / "neu-det-dev.json"
SOURCE = "folder:line-cam"
CLASSES = list(NEU_DET_CLASSES)


def zero_class_head(model: torch.nn.Module) -> None:
    """Pin every class logit far below any threshold: the model detects nothing (AP exactly 0)."""
    with torch.no_grad():
        for branch in model.head.cls_branches:
            branch[-1].weight.zero_()
            branch[-1].bias.fill_(-30.0)


def make_blind_champion(folder: Path, version: str) -> Path:
    model_cfg = ModelConfig(image_size=64, in_channels=1, yolo=YoloConfig(size="n"))
    torch.manual_seed(0)
    model = build_model(model_cfg, num_classes=len(CLASSES))
    zero_class_head(model)
    return save_bundle(
        folder, model, model_config=model_cfg, class_names=CLASSES, version=version, score_threshold=0.25
    )


class World:
    """A temporary plant: database, daemon output folder, work folders, a champion, frames and reviews."""

    def __init__(self, root: Path, pool: dict[str, list]):
        self.root = root
        self.db = default_sqlite_url(root / "var" / "inspection.db")
        upgrade(self.db)
        self.repo = Repository(self.db)
        self.frames_dir = root / "var" / "inspection"
        self.pool = pool
        self.next_seq = 0
        self.champion = make_blind_champion(root / "models" / "blind-v0", "blind-v0")
        with self.repo.transaction() as s:
            register_model_version(s, load_bundle(self.champion).manifest, str(self.champion))
        with self.repo.transaction() as s:
            activate_model(s, "blind-v0")

    def frame(self, image: np.ndarray, defects: list[tuple[str, tuple]]) -> list[int]:
        """Store one frame the way the daemon does (raw pixels + annotated row + defects); defect ids."""
        seq = self.next_seq
        self.next_seq += 1
        path = raw_frame_path(self.frames_dir, SOURCE, seq)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)
        records = [
            DefectRecord(class_name=c, score=0.8, xyxy=xyxy, track_id=f"{seq}-{i}")
            for i, (c, xyxy) in enumerate(defects)
        ]
        with self.repo.transaction() as s:
            record_frame(
                s,
                FrameRecord(
                    source=SOURCE,
                    seq=seq,
                    width=image.shape[1],
                    height=image.shape[0],
                    model_version="blind-v0",
                    image_path=str(self.frames_dir / "frames" / f"{seq}.jpg"),
                ),
                records,
            )
        with self.repo.transaction() as s:
            rows = s.execute(
                select(Defect.id)
                .join(Frame)
                .where(Frame.source == SOURCE, Frame.seq == seq)
                .order_by(Defect.id)
            )
            return [int(r[0]) for r in rows]

    def batch(self, per_class: int, offset: int) -> dict[str, int]:
        """Frames of NEU training images with every box confirmed; in each class's first frame the
        model's first box is relabelled (it said another class); plus one defect-free piece of steel
        with a rejected false alarm, and one frame with a defect nobody reviewed. Returns verdict counts."""
        counts = {"confirmed": 0, "relabelled": 0, "rejected": 0}
        for k, name in enumerate(CLASSES):
            for j, rec in enumerate(self.pool[name][offset : offset + per_class]):
                image = cv2.imread(str(rec.path), cv2.IMREAD_GRAYSCALE)
                wrong = CLASSES[(k + 1) % len(CLASSES)]
                said = [(wrong if (j == 0 and i == 0) else b.label, b.xyxy) for i, b in enumerate(rec.boxes)]
                for i, (defect_id, box) in enumerate(zip(self.frame(image, said), rec.boxes, strict=True)):
                    if said[i][0] != box.label:
                        with self.repo.transaction() as s:
                            add_review(s, defect_id, reviewer="op", verdict="relabelled", new_class=box.label)
                        counts["relabelled"] += 1
                    else:
                        with self.repo.transaction() as s:
                            add_review(s, defect_id, reviewer="op", verdict="confirmed")
                        counts["confirmed"] += 1
        # A defect-free 64x64 piece of real steel: the top-left corner of an image whose boxes avoid it.
        steel = [
            r for name in CLASSES for r in self.pool[name] if all(b.x1 >= 64 or b.y1 >= 64 for b in r.boxes)
        ][offset]
        patch = cv2.imread(str(steel.path), cv2.IMREAD_GRAYSCALE)[:64, :64]
        (false_alarm,) = self.frame(np.ascontiguousarray(patch), [("crazing", (10.0, 12.0, 40.0, 50.0))])
        with self.repo.transaction() as s:
            add_review(s, false_alarm, reviewer="op", verdict="rejected", note="clean steel")
        counts["rejected"] += 1
        # Two defects on one image, only one reviewed: its window shows the other, so it is skipped.
        rec = next(r for r in self.pool["patches"][offset + per_class :] if len(r.boxes) >= 2)
        image = cv2.imread(str(rec.path), cv2.IMREAD_GRAYSCALE)
        first, _ = self.frame(image, [(b.label, b.xyxy) for b in rec.boxes[:2]])
        with self.repo.transaction() as s:
            add_review(s, first, reviewer="op", verdict="confirmed")
        counts["confirmed"] += 1
        return counts

    def config(self, *extra: str) -> RetrainConfig:
        overrides = [
            f"db={self.db}",
            "base.max_images=12",
            "fixed_set.max_images=24",
            f"collect.frames_dir={self.frames_dir}",
            "collect.val_fraction=0.5",
            "collect.min_reviews=5",
            "collect.min_images=5",
            "champion_fallback=null",
            "device=cpu",
            f"output.work_dir={self.root / 'retrain'}",
            f"output.registry_dir={self.root / 'models' / 'registry'}",
            "recipe.overrides=[model.image_size=64, train.epochs=1, train.max_steps=2, train.batch_size=8, "
            "train.threads=1, train.ema.enabled=false, data.augment.enabled=false]",
            "calibration.holdout_images=8",
            # The seeded database holds a handful of boxes per class: let the new-data check decide on them.
            "gates.min_new_boxes_per_class=1",
            # The blind champion raises no alarm at all, so any working challenger "adds" false rejects;
            # these tests are about the job's mechanics (the operating-point gate has its own tests).
            "gates.max_false_reject_rise=1000",
            *extra,
        ]
        return load_retrain_config(REPO_ROOT / "configs" / "retrain.yaml", overrides)

    def active(self) -> str | None:
        with self.repo.transaction() as s:
            row = active_model(s)
        return None if row is None else row.version

    def runs(self) -> list[RetrainRun]:
        with self.repo.transaction() as s:
            return list(s.scalars(select(RetrainRun).order_by(RetrainRun.id)))

    def review_marks(self) -> dict[int | None, int]:
        with self.repo.transaction() as s:
            rows = s.execute(
                select(Review.used_in_retrain_run_id, func.count()).group_by(Review.used_in_retrain_run_id)
            )
            return {run: int(n) for run, n in rows}

    def versions(self) -> list[str]:
        with self.repo.transaction() as s:
            return list(s.scalars(select(ModelVersion.version).order_by(ModelVersion.id)))


@pytest.fixture(scope="module", name="neu_pool")
def neu_pool_fixture(neu_root: Path) -> dict[str, list]:
    """NEU-DET training-side images whose largest box covers at least 30 % of the image, per file class."""
    aset = read_dataset(neu_root / "annotations", class_names=CLASSES)
    train, _ = apply_split(aset, read_split(SPLIT))
    big = [r for r in train.images if max(b.area for b in r.boxes) >= 0.3 * r.width * r.height]
    return {name: [r for r in big if r.name.startswith(name)] for name in CLASSES}


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path, neu_pool: dict[str, list]) -> World:
    w = World(tmp_path, neu_pool)
    yield w
    w.repo.dispose()


def store_strip(world: World, uri: str, *, coil: str, verdict: str = "confirmed") -> list[int]:
    """Play a ``strip-sim:`` URI as the daemon stores it: overlapping frames with raw pixels, each
    ground-truth box stored once (with the first frame that holds it whole) in frame and strip coordinates,
    every defect reviewed with ``verdict``. Returns the defect ids."""
    sim = StripSimulator.from_spec(uri.partition(":")[2])
    rows, width = sim.strip_hw
    step = sim.spec.frame_lines - sim.spec.overlap_lines
    first = sim.spec.first_line
    pending = list(sim.ground_truth())
    defect_ids: list[int] = []
    for seq, start in enumerate(range(0, max(rows - sim.spec.overlap_lines, 1), step)):
        stop = min(rows, start + sim.spec.frame_lines)
        image = sim.rows(start, stop)
        path = raw_frame_path(world.frames_dir, uri, seq, "png")  # an older output folder's format
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)
        top = first + start
        mine = [t for t in pending if t.xyxy[1] >= top and t.xyxy[3] <= first + stop]
        pending = [t for t in pending if t not in mine]
        records = [
            DefectRecord(
                class_name=t.label,
                score=0.8,
                xyxy=(t.xyxy[0], t.xyxy[1] - top, t.xyxy[2], t.xyxy[3] - top),
                strip_xyxy=t.xyxy,
                track_id=f"{coil}-{seq}-{i}",
            )
            for i, t in enumerate(mine)
        ]
        with world.repo.transaction() as s:
            record_frame(
                s,
                FrameRecord(
                    source=uri,
                    seq=seq,
                    width=width,
                    height=stop - start,
                    start_line=top,
                    line="line-1",
                    coil=coil,
                    model_version="blind-v0",
                ),
                records,
            )
        with world.repo.transaction() as s:
            ids = s.scalars(
                select(Defect.id).join(Frame).where(Frame.source == uri, Frame.seq == seq).order_by(Defect.id)
            )
            defect_ids.extend(int(i) for i in ids)
    for defect_id in defect_ids:
        with world.repo.transaction() as s:
            add_review(s, defect_id, reviewer="op", verdict=verdict)
    return defect_ids
