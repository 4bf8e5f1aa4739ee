"""Records and a manifest shaped like the daemon and ``training.bundle`` write them, shared by the storage
tests (``test_storage.py``, ``test_storage_registry.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from inspection.storage.records import DefectRecord, FrameRecord
from inspection.storage.repository import Repository

T0 = datetime(2026, 3, 1, 6, 0, 0, 123456, tzinfo=UTC)


def manifest(version: str, *, map50: float = 0.5) -> dict:
    """A manifest shaped like ``training.bundle.save_bundle`` writes (the fields the registry reads)."""
    return {
        "format": "steel-model-bundle/1",
        "name": f"bundle-{version}",
        "version": version,
        "created": "2026-03-01T05:00:00+00:00",
        "architecture": {"family": "yolo", "image_size": 224, "in_channels": 1},
        "class_names": ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"],
        "metrics": {"map50": map50},
        "weights": {"file": "weights.safetensors", "sha256": "0" * 64},
    }


def frame(seq: int, **kw) -> FrameRecord:
    base = dict(
        source="strip-sim:test",
        seq=seq,
        processed_at=T0 + timedelta(seconds=seq),
        line="L1",
        coil="C-001",
        width=1600,
        height=800,
        start_line=seq * 600,
        position_m=seq * 0.3,
        length_m=0.3,
        model_version="v1",
    )
    return FrameRecord(**{**base, **kw})


def defect(i: int, **kw) -> DefectRecord:
    base = dict(
        class_name="scratches",
        score=0.9,
        xyxy=(10.0 * i, 20.0, 10.0 * i + 50.0, 80.0),
        strip_xyxy=(10.0 * i, 620.0, 10.0 * i + 50.0, 680.0),
        position_m=0.31,
        cross_m=0.005 * i,
        length_m=0.03,
        width_m=0.025,
        track_id=i,
        first_frame_seq=1,
        last_frame_seq=1,
        crop_path=f"crops/{i}.png",
    )
    return DefectRecord(**{**base, **kw})


def count(repo: Repository, entity) -> int:
    with repo.transaction() as s:
        return s.scalar(select(func.count()).select_from(entity))
