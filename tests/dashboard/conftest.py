"""Seeded inspection databases for the dashboard tests, written through the ORM like the daemon's rows.

The seeded database holds two lines, three coils, two model versions (the second active), 184 frames
(one failed, one dropped) every 30 minutes over the last 46 hours, a few hundred defects with real
NEU-DET crops on disk, four reviews (one defect reviewed twice), one retraining decision and a
two-minute input gap on L2. A burst of ``scratches`` in one hour of line L2 gives the control chart
something to flag. It is built once per session and copied for each test, so a test may write reviews
into its copy.

Expected numbers are never taken from here: tests compute them with their own SQL.
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
import yaml
from PIL import Image
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from datasets.model import NEU_DET_CLASSES
from inspection.storage.db import default_sqlite_url, make_engine, upgrade
from inspection.storage.schema import (
    Coil,
    Defect,
    Frame,
    Gap,
    Line,
    ModelActivation,
    ModelVersion,
    RetrainRun,
    Review,
)

PG_ENV = "STEEL_TEST_PG_URL"
APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
SEED_CLASSES = ("crazing", "inclusion", "patches", "scratches")
CROP_MARGIN = 8


@dataclass(frozen=True)
class Seed:
    """Facts about the seeded database that tests need to drive the app (not expected results)."""

    t0: datetime
    line_ids: dict[str, int]
    coil_ids: dict[str, int]
    model_ids: dict[str, int]
    reviewed_defect_ids: tuple[int, ...]
    media: Path


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _crop(image: Path, xyxy: tuple[float, float, float, float], out: Path) -> tuple[int, int]:
    with Image.open(image) as im:
        x1, y1, x2, y2 = xyxy
        box = (  # as the daemon's sink cuts crops (inspection/stages/sink.py)
            int(max(0, x1 - CROP_MARGIN)),
            int(max(0, y1 - CROP_MARGIN)),
            int(min(im.width, x2 + CROP_MARGIN)),
            int(min(im.height, y2 + CROP_MARGIN)),
        )
        im.crop(box).save(out)
        return im.size


def _kept_frame(image: Path, media: Path) -> Path:
    """A copy of ``image`` in ``frames/`` beside ``media``, as the daemon keeps frames beside crops.

    The dashboard shows only files inside its media roots (the database's folder by default), so the
    seeded rows must point there, not into the dataset folder.
    """
    kept = media.parent / "frames" / image.name
    if not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, kept)
    return kept


def seed_database(
    url: str, *, images: list[Path], media: Path, single_class: str | None = None, t0: datetime | None = None
) -> Seed:
    """Fill a freshly migrated database. ``single_class`` seeds fewer frames, all with that one class.

    ``t0`` (default: 48 hours before the current hour) is the first frame's time.
    """
    rng = random.Random(5)
    media.mkdir(parents=True, exist_ok=True)
    t0 = t0 or _floor_hour(datetime.now(UTC)) - timedelta(hours=48)
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as s, s.begin():
        lines = {"L1": Line(name="L1", mm_per_line=0.5), "L2": Line(name="L2", mm_per_line=0.5)}
        s.add_all(lines.values())
        s.flush()
        coils = {
            "C100": Coil(
                line_id=lines["L1"].id, code="C100", started_at=t0, ended_at=t0 + timedelta(hours=24)
            ),
            "C101": Coil(line_id=lines["L1"].id, code="C101", started_at=t0 + timedelta(hours=24)),
            "C200": Coil(line_id=lines["L2"].id, code="C200", started_at=t0, length_m=500.0),
        }
        s.add_all(coils.values())
        models = {
            "v1": ModelVersion(
                version="v1",
                name="neu-yolo-n",
                family="yolo",
                class_names=list(NEU_DET_CLASSES),
                metrics={"map50": 0.71, "per_class": {"crazing": 0.52}},
                manifest={"version": "v1"},
                created_at=t0 - timedelta(days=3),
            ),
            "v2": ModelVersion(
                version="v2",
                name="neu-yolo-n",
                family="yolo",
                class_names=list(NEU_DET_CLASSES),
                metrics={"map50": 0.78},
                manifest={"version": "v2"},
                created_at=t0 + timedelta(hours=23),
                is_active=True,
                activated_at=t0 + timedelta(hours=24),
                promoted_by="retrain-1",
            ),
        }
        s.add_all(models.values())
        s.add_all(  # the history the Models page shows (and its screenshot): v1 first, v2 by retraining
            [
                ModelActivation(
                    activated_at=t0 - timedelta(days=3), version="v1", previous_version=None, kind="daemon",
                    actor="daemon", reason="first model on the line", forced=False,
                ),
                ModelActivation(
                    activated_at=t0 + timedelta(hours=24), version="v2", previous_version="v1",
                    kind="retrain", actor="retrain-1", reason="mAP@0.5 0.78 against 0.71 on the fixed set",
                    forced=False,
                ),
            ]
        )  # fmt: skip
        s.flush()
        n_frames = 92 if single_class is None else 6
        k_image = 0
        for line, length in (("L1", 2.0), ("L2", 1.5)):
            for k in range(n_frames):
                at = t0 + timedelta(minutes=30 * k)
                coil = ("C100" if k < 48 else "C101") if line == "L1" else "C200"
                start = k if line == "L2" or k < 48 else k - 48
                status = (
                    "failed" if (line, k) == ("L1", 10) else "dropped" if (line, k) == ("L2", 20) else "ok"
                )
                image = images[k_image % len(images)]
                k_image += 1
                frame = Frame(
                    source=f"strip-sim:{line}",
                    seq=k,
                    line_id=lines[line].id,
                    coil_id=coils[coil].id,
                    processed_at=at,
                    captured_at=at - timedelta(milliseconds=40),
                    status=status,
                    error="truncated image" if status == "failed" else None,
                    width=200,
                    height=200,
                    start_line=start * 4000,
                    position_m=start * length,
                    length_m=length,
                    model_version_id=models["v1" if at < t0 + timedelta(hours=24) else "v2"].id,
                    latency_ms=35.0 + k % 7,
                    image_path=str(_kept_frame(image, media)) if k == n_frames - 1 else None,
                )
                if status == "ok":
                    burst = line == "L2" and k in (80, 81) and single_class is None
                    n = 6 if burst else rng.choice((0, 0, 1, 1, 2, 3))
                    for j in range(n):
                        x1, y1 = rng.uniform(0, 140), rng.uniform(0, 140)
                        w, h = rng.uniform(20, 55), rng.uniform(20, 55)
                        xyxy = (round(x1, 1), round(y1, 1), round(x1 + w, 1), round(y1 + h, 1))
                        name = single_class or (
                            "scratches" if burst else rng.choices(SEED_CLASSES, weights=(4, 3, 2, 1))[0]
                        )
                        crop = media / f"{line}-{k}-{j}.png"
                        _crop(image, xyxy, crop)
                        frame.defects.append(
                            Defect(
                                line_id=lines[line].id,
                                coil_id=coils[coil].id,
                                class_name=name,
                                score=round(rng.uniform(0.25, 0.99), 3),
                                x1=xyxy[0],
                                y1=xyxy[1],
                                x2=xyxy[2],
                                y2=xyxy[3],
                                position_m=round(start * length + xyxy[1] * 0.01, 3),
                                cross_m=round(xyxy[0] * 0.01, 3),
                                length_m=round(h * 0.01, 3),
                                width_m=round(w * 0.01, 3),
                                track_id=f"{line}-{k}-{j}",
                                first_frame_seq=k,
                                last_frame_seq=k,
                                model_version_id=frame.model_version_id,
                                crop_path=str(crop),
                                created_at=at,
                            )
                        )
                    frame.n_defects = n
                s.add(frame)
        s.flush()
        ids = list(s.scalars(select(Defect.id).order_by(Defect.id)))
        reviewed: tuple[int, ...] = ()
        if single_class is None:
            d1, d2, d3 = ids[0], ids[1], ids[2]
            old3 = s.get(Defect, d3).class_name
            new3 = "patches" if old3 != "patches" else "crazing"
            at = t0 + timedelta(hours=47)
            s.add_all(
                [
                    Review(
                        defect_id=d1,
                        reviewer="alice",
                        reviewed_at=at,
                        verdict="confirmed",
                        old_class=s.get(Defect, d1).class_name,
                    ),
                    Review(
                        defect_id=d2,
                        reviewer="bob",
                        reviewed_at=at + timedelta(minutes=1),
                        verdict="rejected",
                        old_class=s.get(Defect, d2).class_name,
                        note="oil stain",
                    ),
                    Review(
                        defect_id=d3,
                        reviewer="alice",
                        reviewed_at=at + timedelta(minutes=2),
                        verdict="relabelled",
                        old_class=old3,
                        new_class=new3,
                    ),
                    Review(
                        defect_id=d1,
                        reviewer="carol",
                        reviewed_at=at + timedelta(minutes=3),
                        verdict="rejected",
                        old_class=s.get(Defect, d1).class_name,
                    ),
                ]
            )
            reviewed = (d1, d2, d3)
            s.add(
                Gap(
                    source="strip-sim:L2",
                    line_id=lines["L2"].id,
                    started_at=t0 + timedelta(hours=44, minutes=10),
                    ended_at=t0 + timedelta(hours=44, minutes=12),
                    reason="camera disconnected",
                )
            )
            s.add(
                RetrainRun(
                    started_at=t0 + timedelta(hours=22),
                    finished_at=t0 + timedelta(hours=23),
                    status="promoted",
                    champion_version="v1",
                    challenger_version="v2",
                    decision_reason="mAP@0.5 +0.07 on the fixed set",
                    summary={"added": {"crazing": 12}},
                    last_review_id=0,
                )
            )
    engine.dispose()
    return Seed(
        t0=t0,
        line_ids={k: v.id for k, v in lines.items()},
        coil_ids={k: v.id for k, v in coils.items()},
        model_ids={k: v.id for k, v in models.items()},
        reviewed_defect_ids=reviewed,
        media=media,
    )


@pytest.fixture(scope="session")
def neu_images(neu_root: Path) -> list[Path]:
    return sorted((neu_root / "images").glob("*.jpg"))[::40]


@pytest.fixture(scope="session")
def seed_template(tmp_path_factory: pytest.TempPathFactory, neu_images: list[Path]) -> tuple[Path, Seed]:
    folder = tmp_path_factory.mktemp("seeded")
    db = folder / "template.db"
    url = default_sqlite_url(db)
    upgrade(url)
    seed = seed_database(url, images=neu_images, media=folder / "crops")
    return db, seed


@pytest.fixture
def seed(seed_template: tuple[Path, Seed]) -> Seed:
    return seed_template[1]


@pytest.fixture
def seeded_url(seed_template: tuple[Path, Seed], tmp_path: Path) -> str:
    """A private copy of the seeded SQLite database (WAL checkpointed into the file by dispose), in the
    template's folder so that its crops and frames lie in the database's folder (a media root)."""
    target = seed_template[0].parent / f"{tmp_path.name}.db"
    shutil.copyfile(seed_template[0], target)
    return default_sqlite_url(target)


@pytest.fixture
def empty_url(tmp_path: Path) -> str:
    """A migrated database with no rows at all."""
    url = default_sqlite_url(tmp_path / "empty" / "inspection.db")
    upgrade(url)
    return url


@pytest.fixture
def single_class_url(tmp_path: Path, neu_images: list[Path]) -> str:
    """Twelve frames whose defects are all ``scratches``, no reviews, no retraining."""
    url = default_sqlite_url(tmp_path / "single" / "inspection.db")
    upgrade(url)
    seed_database(url, images=neu_images, media=tmp_path / "single" / "crops", single_class="scratches")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (created from ``STEEL_TEST_PG_URL``, dropped afterwards)."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL server to test against")
    name = f"steel_dash_{uuid.uuid4().hex[:16]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def clear_streamlit_caches() -> Iterator[None]:
    """Each AppTest starts with empty Streamlit caches (results of another test's database never leak)."""
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``make_app(url, **config) -> AppTest`` with the app's config and database set like the CLI does."""

    def make(url: str, **config: object) -> AppTest:
        cfg = tmp_path / "dashboard.yaml"
        cfg.write_text(yaml.safe_dump({"db_url": url, **config}), encoding="utf-8")
        monkeypatch.setenv("STEEL_DASHBOARD_CONFIG", str(cfg))
        monkeypatch.delenv("STEEL_DASHBOARD_DB", raising=False)
        return AppTest.from_file(str(APP), default_timeout=60)

    return make
