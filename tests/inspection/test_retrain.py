"""The retraining job end to end on a small seeded inspection database made from real NEU-DET images.

The database holds frames whose raw pixels are NEU-DET training-side images (never the fixed set, the
split's val side), the daemon's defect rows for their labelled boxes, and operators' reviews: confirmed,
relabelled (the model said the wrong class), rejected false alarms (on a defect-free piece of steel) and
one defect nobody reviewed. The recipe is tiny (64 px, a couple of optimizer steps), so models are only
a little better than chance; the tests make the comparisons certain instead by construction:

* the first champion detects nothing (its class logits are pinned far below any threshold: AP exactly 0),
  so any challenger that finds a single defect is better on both sets, and must be promoted;
* a challenger "made worse on purpose" gets the same treatment after training, so it cannot be better on
  the new data, and must be rejected with that reason recorded.

The numbers recorded are checked against an independent evaluation with ``steel eval``'s code path.
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from sqlalchemy import func, select
from typer import Typer
from typer.testing import CliRunner

from datasets.detections import Detections
from datasets.readers import read_dataset
from datasets.settings import REPO_ROOT
from datasets.split import read_split, verify_split
from inspection.messages import Frame as FrameMsg
from inspection.queues import BoundedQueue
from inspection.results import FrameResult
from inspection.retrain import job as retrain_job
from inspection.retrain.cli import models_app, retrain_command
from inspection.retrain.collect import ReviewRange, collect_snapshot, load_snapshot
from inspection.retrain.config import CollectConfig, GatesConfig, RetrainConfig
from inspection.retrain.decide import SetScores, decide
from inspection.retrain.evaluate import evaluate_bundle
from inspection.retrain.merge import read_source
from inspection.retrain.report import format_summary
from inspection.retrain.windows import VisibleDefect, box_in_window, label_window, place_window
from inspection.stages.evidence import EvidenceOptions, EvidenceWriter
from inspection.stages.sink import Geometry, SinkStage
from inspection.storage.paths import raw_frame_path
from inspection.storage.schema import ModelVersion, Review
from tests.inspection.retrain_fixtures import (  # noqa: F401 - fixtures
    CLASSES,
    SOURCE,
    World,
    neu_pool_fixture,
    world_fixture,
    zero_class_head,
)
from training import trainer
from training.anomaly.store import load_anomaly
from training.bundle import load_bundle, save_bundle

SPLIT = REPO_ROOT / "configs" / "splits" / "neu-det-dev.json"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


# ---------------------------------------------------------------- the promotion rule (pure)

GATES = GatesConfig(max_map50_drop=0.02, max_class_ap50_drop=0.05, require_better_on_new=True)


def scores(map50, ap50=None, false_alarms=0, images=10, gt=None):
    per_class = ap50 if ap50 is not None else {"crazing": map50, "scratches": map50}
    return SetScores(
        map50=map50, per_class_ap50=per_class, false_alarms=false_alarms, images=images, gt_per_class=gt or {}
    )


@pytest.mark.parametrize(
    ("champ_fixed", "chall_fixed", "champ_new", "chall_new", "promote", "needle"),
    [
        # better everywhere
        (scores(0.70), scores(0.72), scores(0.30), scores(0.50), True, "promoted"),
        # a small loss on the fixed set, within tolerance, and better on the new data
        (scores(0.70), scores(0.69), scores(0.30), scores(0.50), True, "within"),
        # the fixed set drops beyond tolerance
        (scores(0.70), scores(0.65), scores(0.30), scores(0.50), False, "fixed-set mAP@0.5 0.700 -> 0.650"),
        # overall fine, one class collapses
        (
            scores(0.70, {"crazing": 0.50, "scratches": 0.90}),
            scores(0.70, {"crazing": 0.40, "scratches": 1.00}),
            scores(0.30),
            scores(0.50),
            False,
            "crazing AP50 0.500 -> 0.400",
        ),
        # not better on the new data (a tie is not better)
        (scores(0.70), scores(0.70), scores(0.40), scores(0.40), False, "new-data mAP@0.5 0.400 -> 0.400"),
        # new data of background only: fewer false alarms is better, more is not
        (scores(0.70), scores(0.70), scores(None, {}, 5), scores(None, {}, 1), True, "false alarms 5 -> 1"),
        (scores(0.70), scores(0.70), scores(None, {}, 1), scores(None, {}, 3), False, "not fewer"),
        # no validation part in the new data (one coil): nothing to compare, said, not gated
        (scores(0.70), scores(0.70), None, None, True, "no validation part"),
        # a validation part of a handful of boxes: the comparison is not significant and does not decide
        (
            scores(0.70),
            scores(0.70),
            scores(0.40, images=3, gt={"crazing": 3}),
            scores(0.10, images=3, gt={"crazing": 3}),
            True,
            "not significant: rests on boxes per class crazing 3 (needs 10",
        ),
    ],
)
def test_decide_table(champ_fixed, chall_fixed, champ_new, chall_new, promote, needle):
    decision = decide(
        champion_fixed=champ_fixed,
        challenger_fixed=chall_fixed,
        champion_new=champ_new,
        challenger_new=chall_new,
        gates=GATES,
    )
    assert decision.promote is promote
    assert decision.reason.startswith("promoted" if promote else "rejected")
    assert needle in decision.reason or needle in " ".join(c.message for c in decision.checks)
    assert all(c.passed for c in decision.checks) is promote


def test_decide_without_champion_and_without_new_gate():
    first = decide(
        champion_fixed=None, challenger_fixed=scores(0.1), champion_new=None, challenger_new=None, gates=GATES
    )
    assert first.promote and "no champion" in first.reason
    relaxed = GatesConfig(max_map50_drop=0.02, max_class_ap50_drop=0.05, require_better_on_new=False)
    kept = decide(
        champion_fixed=scores(0.5),
        challenger_fixed=scores(0.5),
        champion_new=None,
        challenger_new=None,
        gates=relaxed,
    )
    assert kept.promote and {c.name for c in kept.checks} == {
        "fixed_map50",
        "class_ap50:crazing",
        "class_ap50:scratches",
    }


def test_set_scores_from_eval_counts_false_alarms():
    summary = {
        "images": 3,
        "map50": None,
        "per_class": {"crazing": {"ap50": None, "ap": None, "gt": 0}},
        "confusion_matrix": [[0, 0], [4, 0]],  # background row: 4 predictions of crazing matched nothing
    }
    assert SetScores.from_eval(summary) == SetScores(
        None, {"crazing": None}, false_alarms=4, images=3, gt_per_class={"crazing": 0}
    )


# ---------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("box", "frame_wh", "window"),
    [
        ((90, 90, 110, 110), (1000, 600), (0, 0, 200, 200)),  # centred 100,100 -> 0..200
        ((490, 290, 510, 310), (1000, 600), (400, 200, 600, 400)),
        ((980, 590, 1000, 600), (1000, 600), (800, 400, 1000, 600)),  # snapped to the far edges
        ((10, 10, 50, 50), (150, 120), (0, 0, 150, 120)),  # frame smaller than a window: all of it
    ],
)
def test_place_window(box, frame_wh, window):
    assert place_window(box, frame_wh=frame_wh, window_px=200) == window


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((10, 10, 50, 50), (10, 10, 50, 50)),  # inside
        ((180, 10, 220, 50), (180, 10, 200, 50)),  # half inside: clipped, kept at visibility 0.3
        ((195, 10, 235, 50), None),  # 12.5 % inside: dropped
        ((-100, -100, 300, 300), (0, 0, 200, 200)),  # larger than the window and filling it
    ],
)
def test_box_in_window(box, expected):
    assert box_in_window(box, (0, 0, 200, 200), min_visibility=0.3) == expected


def test_label_window_policies():
    window = (0, 0, 200, 200)
    confirmed = VisibleDefect(1, (10, 10, 60, 60), "positive", "scratches")
    rejected = VisibleDefect(2, (100, 100, 150, 150), "rejected", None)
    unreviewed = VisibleDefect(3, (120, 20, 170, 70), "unreviewed", "patches")
    outside = VisibleDefect(4, (400, 400, 450, 450), "unreviewed", "patches")
    cfg = CollectConfig()
    boxes, reason = label_window(window, [confirmed, rejected, outside], class_names=CLASSES, cfg=cfg)
    assert reason is None and [(b.label, b.xyxy) for b in boxes] == [("scratches", (10, 10, 60, 60))]
    assert label_window(window, [rejected], class_names=CLASSES, cfg=cfg) == ([], None)  # background
    assert label_window(window, [confirmed, unreviewed], class_names=CLASSES, cfg=cfg) == (
        None,
        "unreviewed_defect_in_window",
    )
    keep = CollectConfig(unreviewed="predicted")
    boxes, _ = label_window(window, [confirmed, unreviewed], class_names=CLASSES, cfg=keep)
    assert sorted(b.label for b in boxes) == ["patches", "scratches"]
    odd = VisibleDefect(5, (10, 10, 60, 60), "positive", "rust")
    assert label_window(window, [odd], class_names=CLASSES, cfg=cfg) == (None, "unknown_class")


# ---------------------------------------------------------- the job on a seeded database (retrain_fixtures)


def test_collect_snapshot(world: World):
    counts = world.batch(per_class=2, offset=0)
    cfg = world.config()
    with world.repo.transaction() as s:
        up_to = int(s.scalar(select(func.max(Review.id))))
        snap = collect_snapshot(
            s,
            reviews=ReviewRange(0, up_to),
            class_names=CLASSES,
            cfg=cfg.collect,
            out_dir=world.root / "snap",
        )
    stats = snap.stats
    assert {k: stats["reviews"][k] for k in counts} == counts
    # 12 training frames + the clean steel; the frame with an unreviewed defect is skipped.
    assert stats["images"] == 13 and len(snap.images) == 13
    assert stats["background_images"] == 1
    assert stats["skipped"] == {"unreviewed_defect_in_window": 1}
    # A 200 px window is a whole NEU image: its other boxes share the first box's window.
    frames = [rec for name in CLASSES for rec in world.pool[name][:2]]
    assert stats["defects_in_shared_windows"] == sum(len(rec.boxes) - 1 for rec in frames)
    # Labels are the operators' (relabels applied), boxes the images' own NEU boxes (windows = whole image).
    expected: dict[str, int] = dict.fromkeys(CLASSES, 0)
    for name in CLASSES:
        for rec in world.pool[name][:2]:
            for b in rec.boxes:
                expected[b.label] += 1
    assert stats["boxes_per_class"] == expected
    # The VoTT export reads back with the same boxes; the split file's hashes match the images.
    back = read_dataset(snap.export, format="vott-json", class_names=CLASSES)
    assert not [p for p in back.problems if p.severity == "error"]
    assert sum(len(r.boxes) for r in back.images) == sum(expected.values())
    assert verify_split(read_split(snap.split_file), back) == []
    assert len(snap.val) >= 6 and set(r.name for r in snap.val).isdisjoint(r.name for r in snap.train)
    reloaded = load_snapshot(world.root / "snap", CLASSES)
    assert reloaded is not None and [r.sha256 for r in reloaded.images] == [r.sha256 for r in snap.images]


def test_fixed_set_is_never_the_base():
    with pytest.raises(ValueError, match="fixed set must never be trained on"):
        RetrainConfig.model_validate({"fixed_set": {"side": "train"}})


@pytest.mark.slow
def test_better_challenger_promoted_worse_one_rejected_rollback(world: World, monkeypatch):
    world.batch(per_class=2, offset=0)
    shipped_anomaly = REPO_ROOT / "models" / "neu-yolo-n" / "anomaly"
    if shipped_anomaly.is_dir():  # the champion's anomaly model must survive the promotion
        shutil.copytree(shipped_anomaly, world.champion / "anomaly")
    cfg = world.config("from_champion=false")
    lines: list[str] = []
    first = retrain_job.run_retrain(cfg, log=lines.append)
    assert first.status == "promoted", first.reason
    if shipped_anomaly.is_dir():
        carried = load_anomaly(world.root / "models" / "registry" / "retrain-r1")
        assert first.summary["anomaly"]["model_version"] == carried.manifest["version"]
    assert first.challenger_version == "retrain-r1" and world.active() == "retrain-r1"
    assert "new-data mAP@0.5 0.000 -> " in first.reason and "retrain run 1: PROMOTED" in lines[-1]
    # The stored numbers are the ones `steel eval` computes for the registered bundle on the fixed set.
    registered = load_bundle(world.root / "models" / "registry" / "retrain-r1")
    fixed = read_source(cfg.fixed_set, CLASSES)
    independent = evaluate_bundle(registered, fixed, device="cpu")
    (run,) = world.runs()
    assert run.status == "promoted" and run.champion_version == "blind-v0" and run.last_review_id > 0
    assert run.summary["metrics"]["fixed"]["challenger"]["map50"] == pytest.approx(independent["map50"])
    assert run.summary["metrics"]["fixed"]["champion"]["map50"] == 0.0
    assert run.summary["data_added"]["boxes_per_class"]["scratches"] > 0
    # The challenger was judged at per-class thresholds calibrated on held-out images, published with it.
    point = run.summary["operating_points"]["challenger"]
    assert set(point["thresholds"]) == set(CLASSES) and "held-out base images" in point["chosen_by"]
    published = registered.manifest["training"]["retrain"]["operating_point"]["thresholds"]
    assert published == point["thresholds"] and "reject recall" in lines[-1]
    # ...where the detector, `steel eval` and the reject rule read it: the line runs what was judged.
    assert registered.per_class_thresholds == point["thresholds"]
    assert world.review_marks() == {1: run.last_review_id}
    with world.repo.transaction() as s:
        row = s.scalars(select(ModelVersion).where(ModelVersion.version == "retrain-r1")).one()
        assert (
            row.metrics["map50"] == pytest.approx(independent["map50"]) and row.promoted_by == "retrain run 1"
        )

    # A running daemon's promotion watcher sees the new active model and swaps its detector to it.
    from inspection.daemon import Daemon
    from inspection.detector import TileDetector

    class OneCheck(threading.Event):
        def wait(self, timeout=None):
            self.calls = getattr(self, "calls", 0) + 1
            return self.calls > 1  # one promotion check, then stop

    daemon = SimpleNamespace(stop_event=OneCheck(), repository=world.repo)
    daemon.detector = TileDetector(world.champion, device="cpu", batch_size=2)
    daemon.reload_model = lambda path: daemon.detector.reload(path)
    Daemon._watch_promotions(daemon, 0.0)
    assert daemon.detector.version == "retrain-r1"

    # Second run: new reviews, fine-tuned from the new champion, then made worse on purpose.
    world.batch(per_class=2, offset=2)
    real_train = retrain_job.train_challenger

    def sabotaged(train_cfg, *, nproc, log):
        bundle_dir, info = real_train(train_cfg, nproc=nproc, log=log)
        assert train_cfg.model.yolo.weights.endswith("retrain-r1/weights.safetensors")
        bundle = load_bundle(bundle_dir)
        zero_class_head(bundle.model)
        save_bundle(
            bundle_dir,
            bundle.model,
            model_config=bundle.model_config,
            class_names=bundle.class_names,
            version=bundle.version,
            score_threshold=bundle.score_threshold,
        )
        return bundle_dir, info

    monkeypatch.setattr(retrain_job, "train_challenger", sabotaged)
    second = retrain_job.run_retrain(world.config(), log=lines.append)
    assert second.status == "rejected" and second.run_id == 2
    assert "new-data mAP@0.5" in second.reason and "not better" in second.reason
    assert world.active() == "retrain-r1"  # the line keeps the champion
    runs = world.runs()
    assert [r.status for r in runs] == ["promoted", "rejected"] and runs[1].decision_reason == second.reason
    assert runs[1].champion_version == "retrain-r1" and runs[1].challenger_version == "retrain-r2"
    assert world.versions() == ["blind-v0", "retrain-r1", "retrain-r2"]  # registered, not active
    # A fine-tuned bundle stands alone: it no longer points at the champion's weights file.
    r2 = load_bundle(world.root / "models" / "registry" / "retrain-r2")
    assert r2.manifest["architecture"]["yolo"]["weights"] is None
    assert r2.manifest["training"]["retrain"]["fine_tuned_from"] == "retrain-r1"
    assert set(world.review_marks()) == {1, 2}  # the second batch consumed by run 2, none left over
    assert "REJECTED" in format_summary({**runs[1].summary, "status": runs[1].status, "run_id": 2})
    assert retrain_job.run_retrain(world.config(), log=lines.append).status == "nothing-to-do"

    # Rollback is one command; an unloadable bundle is refused.
    app = Typer()
    app.add_typer(models_app, name="models")
    runner = CliRunner()
    result = runner.invoke(app, ["models", "activate", "blind-v0", "--db", world.db, "--by", "qa"])
    assert result.exit_code == 0, result.output
    assert world.active() == "blind-v0"
    listed = json.loads(runner.invoke(app, ["models", "list", "--db", world.db, "--json"]).stdout)
    assert [(m["version"], m["active"]) for m in listed][:2] == [("retrain-r2", False), ("retrain-r1", False)]
    shown = json.loads(
        runner.invoke(app, ["models", "show", "retrain-r2", "--db", world.db, "--json"]).stdout
    )
    assert shown["retrain_run"]["status"] == "rejected" and shown["retrain_run"]["reason"] == second.reason
    # Every activation is a row: the world's first, run 1's promotion, the rollback by hand.
    history = json.loads(runner.invoke(app, ["models", "history", "--db", world.db, "--json"]).stdout)
    assert [(h["version"], h["previous_version"], h["kind"], h["actor"]) for h in history] == [
        ("blind-v0", "retrain-r1", "manual", "qa"),
        ("retrain-r1", "blind-v0", "retrain", "retrain run 1"),
        ("blind-v0", None, "manual", None),
    ]
    assert history[1]["reason"] == first.reason


class SimulatedKill(BaseException):
    """Stands in for kill -9: not an Exception, so the job gets no chance to close its run."""


@pytest.mark.slow
def test_killed_run_resumes_and_completes_once(world: World, monkeypatch):
    world.batch(per_class=2, offset=0)
    cfg = world.config(
        "from_champion=true",
        "recipe.overrides=[train.epochs=2, train.max_steps=1, "
        "train.batch_size=8, train.threads=1, train.ema.enabled=false, data.augment.enabled=false]",
    )

    real_save = trainer.save_checkpoint
    saves: list[int] = []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(kwargs["epoch"])
        raise SimulatedKill("killed after the first epoch's checkpoint")

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(SimulatedKill):
        retrain_job.run_retrain(cfg, log=lambda _: None)
    (run,) = world.runs()
    assert run.status == "running" and run.summary["phase"] == "training" and saves == [0]
    assert world.versions() == ["blind-v0"] and world.review_marks() == {None: run.last_review_id}
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)

    # The rerun (through the CLI, as cron would) resumes the same run from the checkpoint and finishes it.
    app = Typer()
    app.command("retrain")(retrain_command)
    app.command("noop")(lambda: None)
    config_file = world.root / "retrain.yaml"
    config_file.write_text(json.dumps(cfg.model_dump(mode="json")), encoding="utf-8")
    dry = CliRunner().invoke(app, ["retrain", "--config", str(config_file), "--dry-run", "--json"])
    planned = json.loads(dry.stdout)
    assert planned["images"]["fixed_set"] == 24 and planned["images"]["calibration"] == 8
    assert {k: planned[k] for k in planned if k not in ("images", "epochs", "estimate")} | {
        "champion_path": None
    } == {
        "high_water_review_id": 0,
        "newest_review_id": run.last_review_id,
        "new_reviews": {k: run.summary["reviews"][k] for k in ("confirmed", "relabelled", "rejected")},
        "min_reviews": 5,
        "open_run": run.id,
        "champion": "blind-v0",
        "champion_path": None,
        "would_run": True,
    }
    result = CliRunner().invoke(app, ["retrain", "--config", str(config_file), "--json"])
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.exit_code == {"promoted": 0, "rejected": 3}[payload["status"]], result.output
    assert payload["run_id"] == run.id and payload["status"] in ("promoted", "rejected")
    assert payload["summary"]["training"]["resumed"] is True and payload["summary"]["training"]["epochs"] == 2
    assert "epoch 2/2" not in result.stderr  # stderr is not a terminal: no progress bars in cron mail
    (done,) = world.runs()
    assert done.id == run.id and done.status == payload["status"] and done.finished_at is not None
    assert world.versions() == ["blind-v0", f"retrain-r{run.id}"]  # exactly one challenger registered
    assert world.review_marks() == {run.id: run.last_review_id}  # every review counted once, by this run
    again = CliRunner().invoke(app, ["retrain", "--config", str(config_file), "--json"])
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "nothing-to-do"
    assert again.exit_code == 4 and len(world.runs()) == 1
    # The next dry run estimates from this run's measured training time.
    estimate = json.loads(
        CliRunner().invoke(app, ["retrain", "--config", str(config_file), "--dry-run", "--json"]).stdout
    )["estimate"]
    assert estimate["training_seconds"] > 0 and estimate["basis"].startswith(f"run {run.id}: ")


# ---------------------------------------------------------------- the daemon keeps what retraining cuts


def test_sink_keeps_raw_frame_pixels_beside_the_annotated_copy(tmp_path: Path, neu_root: Path):
    sink = SinkStage(
        BoundedQueue("sink", 2),
        None,
        writer=None,
        evidence=EvidenceWriter(EvidenceOptions(tmp_path, False, "defects", True, 1e9), CLASSES, "line-1"),
        geometry=Geometry(0.5, 0.5),
        line="line-1",
        coil=None,
        abort=threading.Event(),
    )
    image = cv2.imread(str(neu_root / "images" / "scratches_10.jpg"), cv2.IMREAD_GRAYSCALE)
    dets = Detections(np.array([[20.0, 30.0, 80.0, 150.0]]), np.array([0.9]), np.array([5]))
    now = datetime.now(UTC)
    annotated = sink.evidence.write_now(FrameResult(FrameMsg(SOURCE, 7, image, now), dets, ())).image_path
    raw = cv2.imread(str(raw_frame_path(tmp_path, SOURCE, 7)), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(raw, image)  # lossless, no boxes drawn
    assert annotated is not None and Path(annotated).is_file()
    # A frame the preprocessing halved is stored back at the source frame's size (the boxes' pixels).
    half = np.ascontiguousarray(image[::2, ::2])
    msg = FrameMsg(SOURCE, 8, half, now, meta={"preprocess_scale_xy": (2.0, 2.0)})
    sink.evidence.write_now(FrameResult(msg, dets, ()))
    assert cv2.imread(str(raw_frame_path(tmp_path, SOURCE, 8)), cv2.IMREAD_UNCHANGED).shape == image.shape
    # Frames without detections keep nothing (save_frames: defects).
    sink.evidence.write_now(FrameResult(FrameMsg(SOURCE, 9, image, now), Detections.empty(), ()))
    assert not raw_frame_path(tmp_path, SOURCE, 9).exists()
