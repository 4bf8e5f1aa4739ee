"""The daemon's reject rule defaults to the operating point of the model that scored the frame: a bundle's
calibrated thresholds reach the alarm dispatcher through the detector, across a model swap, and an explicit
``alarms.reject.min_score`` still wins."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from datasets.detections import Detections
from inspection.alarm_dispatch import AlarmDispatcher
from inspection.detector import TileDetector
from inspection.messages import Frame
from inspection.results import FrameResult
from inspection.storage.records import AlarmRecord, DefectRecord, FrameRecord
from tests.training.tiny_bundle import tiny_yolo_bundle
from training.calibrate_cli import write_operating_point
from training.operating_point import CalibrationConfig, OperatingPoint

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class CollectingWriter:
    """Keeps the alarm rows the dispatcher writes (the database side is tested in test_storage)."""

    alarms: list[AlarmRecord] = field(default_factory=list)

    def write_alarm(self, record: AlarmRecord) -> None:
        self.alarms.append(record)


def calibrated(tmp_path: Path, name: str, crazing: float) -> str:
    bundle = tiny_yolo_bundle(tmp_path / name)
    point = OperatingPoint(
        per_class={"crazing": crazing, "inclusion": 0.6, "patches": 0.6, "pitted_surface": 0.6,
                   "rolled-in_scale": 0.6, "scratches": 0.6},
        achieved={},
        config=CalibrationConfig(),
        images=0,
    )  # fmt: skip
    return write_operating_point(bundle, point, data="hand-made")


@pytest.fixture
def detector(tmp_path: Path) -> TileDetector:
    calibrated(tmp_path, "a", crazing=0.1)
    calibrated(tmp_path, "b", crazing=0.3)
    return TileDetector(tmp_path / "a", device="cpu", batch_size=2, threads=1)


def verdict_of(dispatcher: AlarmDispatcher, writer: CollectingWriter, *, version: str, seq: int) -> str:
    frame = Frame(source="cam", seq=seq, image=np.zeros((64, 64), np.uint8), captured_at=T0)
    result = FrameResult(frame=frame, detections=Detections.empty(), new_defects=(), model_version=version)
    defects = [DefectRecord(class_name="crazing", score=0.2, xyxy=(1.0, 1.0, 9.0, 9.0))]
    dispatcher(result, FrameRecord(source="cam", seq=seq), defects)
    return writer.alarms[-1].kind


def test_frames_are_judged_by_the_operating_point_of_the_model_that_scored_them(
    detector: TileDetector, tmp_path: Path
) -> None:
    version_a = detector.version
    assert detector.operating_point()["crazing"] == 0.1
    assert detector.reload(tmp_path / "b")
    version_b = detector.version
    assert version_a != version_b and detector.operating_point()["crazing"] == 0.3
    writer = CollectingWriter()
    dispatcher = AlarmDispatcher(
        {"reject": {}, "sinks": [{"kind": "log", "notify_ok": True}]},
        repository_writer=writer,
        class_names=detector.class_names,
        operating_point=detector.operating_point,
    )
    # crazing at 0.2: over model a's 0.1 (a frame scored just before the swap), under model b's 0.3.
    assert verdict_of(dispatcher, writer, version=version_a, seq=1) == "NG"
    assert verdict_of(dispatcher, writer, version=version_b, seq=2) == "OK"


def test_an_explicit_min_score_in_the_config_wins_over_the_operating_point(detector: TileDetector) -> None:
    writer = CollectingWriter()
    dispatcher = AlarmDispatcher(
        {"reject": {"min_score": 0.5}, "sinks": [{"kind": "log", "notify_ok": True}]},
        repository_writer=writer,
        class_names=detector.class_names,
        operating_point=detector.operating_point,
    )
    assert verdict_of(dispatcher, writer, version=detector.version, seq=1) == "OK"
