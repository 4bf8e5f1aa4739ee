"""A retraining gate that can be trusted (issue 17): no fixed-set leakage, the new data split by coil, only
promoted or accepted data replayed, thresholds inside the decision, an audit trail of activations.

Real SQLite, real NEU-DET images (stored as the daemon stores frames, some as simulated line-scan strips),
the shipped model for the operating-point comparison; nothing here trains (the job's short fine-tunes are
in ``test_retrain.py``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import pytest
import torch
import yaml
from sqlalchemy import select
from typer import Typer
from typer.testing import CliRunner

from datasets.settings import REPO_ROOT
from datasets.split import read_split
from inspection.daemon import Daemon
from inspection.retrain import job as retrain_job
from inspection.retrain.cli import models_app, retrain_command
from inspection.retrain.collect import ReviewRange, Snapshot, collect_snapshot, window_image_name
from inspection.retrain.config import RetrainConfig
from inspection.retrain.decide import SetScores, decide
from inspection.retrain.evaluate import score_bundle
from inspection.retrain.gate import judge
from inspection.retrain.leakage import FixedSetGuard, build_guard, strip_images_under
from inspection.retrain.merge import build_training_set, read_data, read_source
from inspection.retrain.operating import calibrate_thresholds, rejects_at
from inspection.retrain.retention import apply_retention
from inspection.sources.strip_sim import StripSimulator
from inspection.storage.db import upgrade
from inspection.storage.model_history import activation_history
from inspection.storage.model_registry import activate_model, active_model, register_model_version
from inspection.storage.repository import Repository
from inspection.storage.retrain_store import newest_review_id, record_snapshot_decision, replayable_run_ids
from inspection.storage.reviews import add_review, finish_retrain_run, start_retrain_run
from inspection.storage.schema import Frame, SnapshotDecision
from tests.inspection.daemon_fixtures import daemon_config, strip_spec
from tests.inspection.retrain_fixtures import (  # noqa: F401 - fixtures
    CLASSES,
    SOURCE,
    SPLIT,
    World,
    make_blind_champion,
    neu_pool_fixture,
    store_strip,
    world_fixture,
)
from training.bundle import load_bundle

TRAIN_STRIP = "strip-sim:across=1,along=4,seed={seed},frame_lines=400,overlap_lines=200,coil=c{seed}"
VAL_STRIP = "strip-sim:across=1,along=2,split=val,seed=3,frame_lines=400,overlap_lines=200,coil=v1"


@pytest.fixture(scope="module", name="guard")
def guard_fixture() -> FixedSetGuard:
    """The whole fixed side (the split's val side, 288 images), hashed."""
    cfg = RetrainConfig()
    return build_guard(read_source(cfg.fixed_set, CLASSES))


@pytest.fixture(scope="module", name="fixed_images")
def fixed_images_fixture() -> list:
    return read_source(RetrainConfig().fixed_set, CLASSES)


def collect(world: World, out: str, *, guard: FixedSetGuard | None, **collect_overrides: object) -> Snapshot:
    cfg = world.config().collect.model_copy(update=collect_overrides)
    with world.repo.transaction() as s:
        return collect_snapshot(
            s,
            reviews=ReviewRange(0, newest_review_id(s)),
            class_names=CLASSES,
            cfg=cfg,
            out_dir=world.root / out,
            guard=guard,
        )


def frame_ids(world: World, source: str) -> set[int]:
    with world.repo.transaction() as s:
        return set(s.scalars(select(Frame.id).where(Frame.source == source)))


def origin_frame(record) -> int:
    return int(record.origin.item.split()[1])  # "frame <id> defect <id>"


def app() -> Typer:
    cli = Typer()
    cli.add_typer(models_app, name="models")
    cli.command("retrain")(retrain_command)
    return cli


# ---------------------------------------------------------------- 1. the fixed set never reaches training


def test_the_default_strip_and_the_demo_strip_play_no_fixed_set_image():
    val = set(read_split(SPLIT).val)
    default = StripSimulator.from_spec("across=4,along=12")
    assert not {p.image for p in default.placements()} & val
    demo = yaml.safe_load((REPO_ROOT / "configs" / "inspection.yaml").read_text(encoding="utf-8"))["source"]
    shown = {p.image for p in StripSimulator.from_spec(demo.partition(":")[2]).placements()}
    assert len(shown) == 48 and not shown & val
    # Validation images stay playable on request (recall measurements), and are then refused by collection.
    assert {p.image for p in StripSimulator.from_spec("across=2,along=2,split=val").placements()} <= val


def test_windows_showing_fixed_set_pixels_never_reach_training(world: World, guard, fixed_images):
    world.batch(per_class=1, offset=0)  # training-side frames: all usable
    as_is, reencoded = [r for r in fixed_images if len(r.boxes) == 1][:2]
    for record, tweak in ((as_is, None), (reencoded, "jpeg+bright")):
        image = cv2.imread(str(record.path), cv2.IMREAD_GRAYSCALE)
        if tweak:
            brighter = cv2.convertScaleAbs(image, alpha=1.0, beta=12)
            _, data = cv2.imencode(".jpg", brighter, [cv2.IMWRITE_JPEG_QUALITY, 60])
            image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        (defect,) = world.frame(image, [(b.label, b.xyxy) for b in record.boxes])
        with world.repo.transaction() as s:
            add_review(s, defect, reviewer="op", verdict="confirmed")
    store_strip(world, VAL_STRIP, coil="v1")
    train_strip = TRAIN_STRIP.format(seed=11)
    store_strip(world, train_strip, coil="c11")

    snap = collect(world, "snap", guard=guard)
    skipped = snap.stats["skipped"]
    assert skipped["fixed_set_near_duplicate"] == 2  # the copy and the re-encoded, brightened copy
    assert skipped["fixed_set_provenance"] >= 2  # every window of the validation strip
    val_strip_frames = frame_ids(world, VAL_STRIP)
    assert not [r for r in snap.images if origin_frame(r) in val_strip_frames]
    assert not [r for r in snap.images if guard.near_duplicate(cv2.imread(str(r.path), 0)) is not None]
    # Nothing else is refused: the 6 training frames, the clean steel and the training-side strip's windows.
    from_train_strip = [r for r in snap.images if origin_frame(r) in frame_ids(world, train_strip)]
    assert len(snap.images) == 7 + len(from_train_strip) and from_train_strip

    # A snapshot cut before this check existed is cleaned when it is replayed.
    old = collect(world, "old-snapshot", guard=None)
    leaked = [r for r in old.images if origin_frame(r) in val_strip_frames]
    leaked += [r for r in old.images if guard.near_duplicate(cv2.imread(str(r.path), 0)) is not None]
    assert len({r.name for r in leaked}) >= 4
    merged = build_training_set(
        base=[],
        previous=[old],
        new=snap,
        fixed=fixed_images[:4],
        class_names=CLASSES,
        out_dir=world.root / "merged",
        guard=guard,
    )
    trained = set(read_split(merged.split_file).train)
    assert not trained & {r.name for r in leaked}
    assert merged.counts["dropped_in_fixed_set"] >= len({r.name for r in leaked})


# ---------------------------------------------------------------- 2. split by coil, significance said


def _strip_window(name: str, step: int) -> tuple[str, tuple[int, int, int, int]]:
    """``(source prefix, window in strip lines)`` from an image name ``<source>-<seq>-<x0>-<y0>.png``."""
    prefix, seq, x0, y0 = name[: -len(".png")].rsplit("-", 3)
    top = int(seq) * step + int(y0)
    return prefix, (int(x0), top, int(x0) + 200, top + 200)


def test_new_data_is_split_by_coil_and_a_thin_check_is_not_significant(world: World):
    for seed in (11, 12, 13, 14, 15):
        store_strip(world, TRAIN_STRIP.format(seed=seed), coil=f"c{seed}")
    snap = collect(world, "snap", guard=None, val_fraction=0.4)
    side = {r.name: "train" for r in snap.train} | {r.name: "val" for r in snap.val}
    groups = snap.stats["groups"]
    assert snap.train and snap.val and len(set(groups.values())) == 5
    for group in set(groups.values()):
        assert len({side[name] for name, g in groups.items() if g == group}) == 1, group
    # Frames overlap by 200 lines, so windows of one coil overlap; no validation window overlaps training.
    train_windows = [_strip_window(r.name, 200) for r in snap.train]
    for r in snap.val:
        prefix, (x0, y0, x1, y1) = _strip_window(r.name, 200)
        assert not [
            w for p, w in train_windows if p == prefix and w[0] < x1 and x0 < w[2] and w[1] < y1 and y0 < w[3]
        ]
    assert snap.stats["val"]["groups"] >= 1 and snap.stats["train"]["groups"] >= 1
    # The check on the new data says how many boxes per class it rests on, and that a handful decides nothing.
    val_boxes = snap.stats["val"]["boxes_per_class"]
    assert sum(val_boxes.values()) == sum(len(r.boxes) for r in snap.val) > 0
    thin = SetScores(0.2, {}, images=len(snap.val), gt_per_class=val_boxes)
    decision = decide(
        champion_fixed=SetScores(0.5, {}),
        challenger_fixed=SetScores(0.5, {}),
        champion_new=SetScores(0.9, {}, images=len(snap.val), gt_per_class=val_boxes),
        challenger_new=thin,
        gates=world.config("gates.min_new_boxes_per_class=50").gates,
    )
    (check,) = [c for c in decision.checks if c.name == "new_map50"]
    assert (
        decision.promote and not check.gated and "not significant: rests on boxes per class" in check.message
    )


# ---------------------------------------------------------------- 3. only promoted or accepted data replayed


def test_only_promoted_or_accepted_snapshots_are_replayed(world: World):
    world.batch(per_class=1, offset=0)
    snap = collect(world, "snap", guard=None)
    cfg = world.config()
    with world.repo.transaction() as s:
        for status in ("rejected", "promoted", "rejected", "promoted"):
            run = start_retrain_run(s)
            finish_retrain_run(s, run.id, status=status, decision_reason=status, last_review_id=None)
            shutil.copytree(snap.dir, Path(cfg.output.work_dir) / "snapshots" / f"run-{run.id}")
    runner, db = CliRunner(), ["--db", world.db]
    accept = ["models", "snapshot", "accept", "3", "--reason", "labels checked by QA", "--by", "qa", *db]
    assert runner.invoke(app(), accept).exit_code == 0
    drop = ["models", "snapshot", "drop", "4", "--reason", "coil 17 mislabelled", "--by", "qa", *db]
    assert runner.invoke(app(), drop).exit_code == 0
    unknown = runner.invoke(app(), ["models", "snapshot", "drop", "99", "--reason", "x", *db])
    assert unknown.exit_code == 1 and "retrain run 99 does not exist" in unknown.output
    assert runner.invoke(app(), ["models", "snapshot", "drop", "2", *db]).exit_code == 2  # --reason needed

    replayed = retrain_job._previous_snapshots(cfg, world.repo, 5, CLASSES)
    assert [s.dir.name for s in replayed] == ["run-2", "run-3"]
    with world.repo.transaction() as s:
        rows = [(d.run_id, d.action, d.decided_by, d.reason) for d in s.scalars(select(SnapshotDecision))]
    assert rows == [(3, "accept", "qa", "labels checked by QA"), (4, "drop", "qa", "coil 17 mislabelled")]


# ---------------------------------------------------------------- 5. activations: --force, history


def test_activating_a_rejected_version_needs_force_and_a_reason_and_each_activation_is_a_row(world: World):
    bundle = make_blind_champion(world.root / "models" / "retrain-r1", "retrain-r1")
    with world.repo.transaction() as s:
        register_model_version(s, load_bundle(bundle).manifest, str(bundle))
    with world.repo.transaction() as s:
        run = start_retrain_run(s, champion_version="blind-v0")
        finish_retrain_run(
            s, run.id, status="rejected", decision_reason="rejected: worse", challenger_version="retrain-r1"
        )
    runner, db = CliRunner(), ["--db", world.db]
    refused = runner.invoke(app(), ["models", "activate", "retrain-r1", *db])
    assert refused.exit_code == 1 and "needs --force and --reason" in refused.output
    assert runner.invoke(app(), ["models", "activate", "retrain-r1", "--force", *db]).exit_code == 1
    assert world.active() == "blind-v0"
    forced = [
        "models",
        "activate",
        "retrain-r1",
        "--force",
        "--reason",
        "line trial approved",
        "--by",
        "qa",
        *db,
    ]
    assert runner.invoke(app(), forced).exit_code == 0 and world.active() == "retrain-r1"
    back = ["models", "activate", "blind-v0", "--reason", "trial over", "--by", "qa", *db]
    assert runner.invoke(app(), back).exit_code == 0

    history = json.loads(runner.invoke(app(), ["models", "history", "--json", *db]).stdout)
    assert [
        (h["version"], h["previous_version"], h["kind"], h["actor"], h["reason"], h["forced"])
        for h in history
    ] == [
        ("blind-v0", "retrain-r1", "manual", "qa", "trial over", False),
        ("retrain-r1", "blind-v0", "manual", "qa", "line trial approved", True),
        ("blind-v0", None, "manual", None, None, False),  # the world's first activation
    ]
    text = runner.invoke(app(), ["models", "history", *db]).stdout
    assert "blind-v0 -> retrain-r1  manual by qa: line trial approved  FORCED past a gate rejection" in text
    shown = json.loads(runner.invoke(app(), ["models", "show", "retrain-r1", "--json", *db]).stdout)
    assert [a["reason"] for a in shown["activations"]] == ["line trial approved"]


# ---------------------------------------------------------------- 6. operations


def test_exit_codes_tell_nothing_to_do_and_failed_apart(world: World):
    config_file = world.root / "retrain.yaml"
    config_file.write_text(json.dumps(world.config("collect.min_images=1000").model_dump(mode="json")))
    nothing = CliRunner().invoke(app(), ["retrain", "--config", str(config_file)])
    assert nothing.exit_code == 4 and "nothing to do" in nothing.output
    world.batch(per_class=1, offset=0)
    failed = CliRunner().invoke(app(), ["retrain", "--config", str(config_file), "--json"])
    assert failed.exit_code == 1 and json.loads(failed.stdout.splitlines()[-1])["status"] == "failed"
    assert [r.status for r in world.runs()] == ["failed"]
    bad = CliRunner().invoke(app(), ["retrain", "--config", str(config_file), "--set", "gates.nope=1"])
    assert bad.exit_code == 2


def test_retention_prunes_old_rejected_challengers_and_run_folders(world: World):
    cfg = world.config("retention.keep_rejected_bundles=2", "retention.keep_run_dirs=2")
    registry, runs_dir = Path(cfg.output.registry_dir), Path(cfg.output.work_dir) / "runs"
    with world.repo.transaction() as s:
        for i in range(1, 6):
            run = start_retrain_run(s)
            finish_retrain_run(
                s, run.id, status="rejected", decision_reason="-", challenger_version=f"rej-{i}"
            )
            if i != 2:
                (registry / f"rej-{i}").mkdir(parents=True)
                (registry / f"rej-{i}" / "weights.safetensors").write_bytes(b"w")
            (runs_dir / f"run-{run.id}").mkdir(parents=True)
    trial = make_blind_champion(registry / "rej-2", "rej-2")  # once on the line: kept whatever its age
    with world.repo.transaction() as s:
        register_model_version(s, load_bundle(trial).manifest, str(trial))
    with world.repo.transaction() as s:
        activate_model(s, "rej-2", promoted_by="qa", note="trial")
    with world.repo.transaction() as s:
        activate_model(s, "blind-v0", promoted_by="qa", note="trial over")
    with world.repo.transaction() as s:
        removed = apply_retention(s, cfg)
    assert sorted(p.name for p in removed) == ["rej-1", "rej-3", "run-1", "run-2", "run-3"]
    assert sorted(p.name for p in registry.iterdir()) == ["rej-2", "rej-4", "rej-5"]
    assert sorted(p.name for p in runs_dir.iterdir()) == ["run-4", "run-5"]


def test_a_model_registered_by_a_relative_path_resolves_from_any_folder(world: World, monkeypatch, tmp_path):
    shipped = load_bundle(REPO_ROOT / "models" / "neu-yolo-n")
    with world.repo.transaction() as s:
        register_model_version(s, shipped.manifest, "models/neu-yolo-n")  # as daemons registered it
    with world.repo.transaction() as s:
        activate_model(s, shipped.version)
    monkeypatch.chdir(tmp_path)
    with world.repo.transaction() as s:
        version, path = retrain_job.resolve_champion(s, world.config())
    assert version == shipped.version and Path(path) == (REPO_ROOT / "models" / "neu-yolo-n").resolve()
    activate = CliRunner().invoke(app(), ["models", "activate", "blind-v0", "--db", world.db])
    assert activate.exit_code == 0, activate.output
    again = CliRunner().invoke(app(), ["models", "activate", shipped.version, "--db", world.db])
    assert again.exit_code == 0, again.output  # its bundle is found and loaded from elsewhere

    # A daemon started in the checkout now registers the absolute path of its bundle.
    from types import SimpleNamespace

    from inspection.daemon import Daemon
    from inspection.storage.db import default_sqlite_url, upgrade
    from inspection.storage.repository import Repository

    fresh = default_sqlite_url(tmp_path / "fresh.db")
    upgrade(fresh)
    repo = Repository(fresh)
    monkeypatch.chdir(REPO_ROOT)
    daemon = SimpleNamespace(
        repository=repo,
        detector=SimpleNamespace(
            manifest=shipped.manifest, version=shipped.version, path=Path("models/neu-yolo-n")
        ),
    )
    Daemon._register_model(daemon)  # type: ignore[arg-type]  # only the attributes it reads
    with repo.transaction() as s:
        row = active_model(s)
    repo.dispose()
    assert row is not None and row.path == str((REPO_ROOT / "models" / "neu-yolo-n").resolve())


def test_frame_sources_of_a_strip_are_what_collection_rebuilds(world: World):
    """The provenance check rebuilds the strip from the stored source URI: its images are the sim's."""
    sim = StripSimulator.from_spec(VAL_STRIP.partition(":")[2])
    first, second = sim.placements()
    assert strip_images_under(VAL_STRIP, (0, 0, 200, 200)) == [first.image]
    assert strip_images_under(VAL_STRIP, (0, 150, 200, 350)) == [first.image, second.image]
    assert strip_images_under("strip-sim:across=1,along=1,split=nope", (0, 0, 1, 1)) is None


# ---------------------------------------------------------------- 4. thresholds inside the decision


def shipped_copy(folder: Path, version: str, *, score: float, thresholds: dict | None = None):
    """The shipped model under another version, with another alarm threshold (and a per-class operating
    point as a retrain run records it, when given)."""
    shutil.copytree(REPO_ROOT / "models" / "neu-yolo-n", folder / version)
    manifest_file = folder / version / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["version"], manifest["thresholds"]["score"] = version, score
    manifest["thresholds"].pop("per_class", None)  # the shipped calibration: this copy runs at ``score``
    manifest["thresholds"].pop("calibration", None)
    if thresholds is not None:  # where a retrain run publishes the challenger's operating point
        manifest["thresholds"]["per_class"] = thresholds
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    return load_bundle(folder / version)


def test_the_challenger_is_calibrated_then_judged_at_its_per_class_operating_point(tmp_path: Path):
    torch.set_num_threads(1)
    cfg = RetrainConfig.model_validate(
        {
            "device": "cpu",
            "fixed_set": {"side": "val", "max_images": 30},
            "calibration": {"holdout_images": 30, "target_recall": 0.95},
            "gates": {"require_better_on_new": False},
        }
    )
    data = read_data(cfg.base, cfg.fixed_set, CLASSES, holdout_images=30)
    # The line runs the shipped model at a conservative 0.7; the challenger has the very same weights.
    champion = shipped_copy(tmp_path, "line-0.7", score=0.7)
    challenger = shipped_copy(tmp_path, "challenger", score=0.25)
    judged = judge(champion, challenger, fixed=data.fixed, calibration=data.holdout, new_val=[], cfg=cfg)

    # Calibrated first: per class, the highest threshold still finding 95 % of the calibration boxes.
    matched = score_bundle(challenger, data.holdout, device="cpu").matched
    thresholds = calibrate_thresholds(matched, target_recall=0.95, fallback=dict.fromkeys(CLASSES, 0.25))
    assert judged.challenger_thresholds == thresholds
    for name, point in rejects_at(matched, thresholds).items():
        m = matched.per_class[name]
        higher = m.scores[m.caught & (m.scores > thresholds[name])]
        assert point.recall is not None and point.recall >= 0.95
        if higher.size:  # the next threshold up loses a box below the target
            assert rejects_at(matched, {**thresholds, name: float(higher.min())})[name].recall < 0.95

    # Same weights, same mAP: the mAP gates pass, and an mAP-only gate would promote ...
    checks = {c.name: c for c in judged.decision.checks}
    assert checks["fixed_map50"].passed and checks["fixed_map50"].champion == checks["fixed_map50"].challenger
    assert all(c.passed for n, c in checks.items() if n.startswith("class_ap50:"))
    scores = SetScores.from_eval({"map50": checks["fixed_map50"].champion, "per_class": {}})
    assert decide(
        champion_fixed=scores,
        challenger_fixed=scores,
        champion_new=None,
        challenger_new=None,
        gates=cfg.gates,
    ).promote
    # ... but at its operating point the challenger would throw out much more good steel: rejected, per class.
    assert not judged.decision.promote and "false rejects per image" in judged.decision.reason
    points = judged.operating_points
    assert points["champion"]["thresholds"] == dict.fromkeys(CLASSES, 0.7)
    fr = {role: sum(p["false_rejects"] for p in points[role]["fixed_set"].values()) for role in points}
    assert fr["challenger"] > fr["champion"]

    # A champion running that very operating point (recorded in its manifest by the run that made it):
    # the same recall and false rejects per class, so the operating-point gates pass.
    same_point = shipped_copy(tmp_path, "line-calibrated", score=0.7, thresholds=thresholds)
    again = judge(same_point, challenger, fixed=data.fixed, calibration=data.holdout, new_val=[], cfg=cfg)
    assert again.decision.promote, again.decision.reason
    assert (
        again.operating_points["champion"]["fixed_set"] == again.operating_points["challenger"]["fixed_set"]
    )

    # A line running a low threshold catches more: calibrated for 50 % recall, the challenger loses recall.
    eager = shipped_copy(tmp_path, "line-0.05", score=0.05)
    half = cfg.model_copy(update={"calibration": cfg.calibration.model_copy(update={"target_recall": 0.5})})
    lower = judge(eager, challenger, fixed=data.fixed, calibration=data.holdout, new_val=[], cfg=half)
    assert not lower.decision.promote and "reject recall" in lower.decision.reason


# ---------------------------------------------------------------- 6. the daemon says which model it runs


def test_the_daemon_logs_its_model_at_start_and_at_a_swap_and_lists_both(
    tmp_path: Path, model_bundle, swap_bundle, caplog
):
    cfg = daemon_config(tmp_path, source=strip_spec(across=1, along=4, line_rate=100000), bundle=model_bundle)
    swapped: list[bool] = []

    def pace(seconds: float) -> bool:  # the camera's line clock; the first tick swaps the model
        if not swapped:
            swapped.append(daemon.reload_model(str(swap_bundle.path)))
        return False

    daemon = Daemon(cfg, once=True, source_options={"wait": pace})
    with caplog.at_level(logging.INFO, logger="steel.daemon"):
        summary = daemon.run()
    assert swapped == [True]
    messages = [r.getMessage() for r in caplog.records if r.name == "steel.daemon"]
    assert f"model at start: {model_bundle.version} ({model_bundle.path})" in messages
    assert any(
        m.startswith(f"model swapped: {model_bundle.version} -> {swap_bundle.version} (") for m in messages
    )
    assert summary.to_dict()["model_versions"] == [model_bundle.version, swap_bundle.version]


def test_activation_history_and_snapshot_decisions_on_both_backends(db_url: str):
    """The audit rows are written in the activation's own transaction, on SQLite and PostgreSQL alike."""
    upgrade(db_url)
    repo = Repository(db_url)
    try:
        with repo.transaction() as s:
            for version in ("a", "b"):
                register_model_version(s, {"version": version, "class_names": CLASSES}, None)
            runs = [start_retrain_run(s).id for _ in range(3)]
            for run_id, status in zip(runs, ("promoted", "rejected", "failed"), strict=True):
                finish_retrain_run(s, run_id, status=status, decision_reason=status)
        with repo.transaction() as s:
            activate_model(s, "a", promoted_by="daemon", kind="daemon")
        with repo.transaction() as s:
            activate_model(s, "b", promoted_by="retrain run 1", note="better", kind="retrain")
        with repo.transaction() as s:
            activate_model(s, "b", promoted_by="someone")  # already active: no change, no row
        with pytest.raises(ValueError, match="kind"), repo.transaction() as s:
            activate_model(s, "a", kind="whim")
        with repo.transaction() as s:
            rows = [(a.version, a.previous_version, a.kind, a.actor) for a in activation_history(s)]
            with pytest.raises(ValueError, match="only finished runs"):
                record_snapshot_decision(s, runs[2], action="accept", by="qa", reason="x")
            record_snapshot_decision(s, runs[0], action="drop", by="qa", reason="bad labels")
            record_snapshot_decision(s, runs[1], action="accept", by="qa", reason="checked")
            replayed = replayable_run_ids(s, before=runs[2] + 1)
        assert rows == [("b", "a", "retrain", "retrain run 1"), ("a", None, "daemon", "daemon")]
        with repo.transaction() as s:
            assert active_model(s).version == "b" and replayed == [runs[1]]
    finally:
        repo.dispose()


def test_snapshots_of_failed_runs_are_pruned_so_a_pass_failing_every_hour_cannot_fill_the_disk(world: World):
    """A run that fails (too little usable data, a training error) leaves its reviews unused, so every later
    pass cuts a new snapshot of the same reviews: failed runs' snapshots are never replayed and are pruned
    beyond the newest ``keep_run_dirs``; promoted and rejected runs' snapshots stay (replay, audit)."""
    cfg = world.config("retention.keep_run_dirs=2")
    snapshots = Path(cfg.output.work_dir) / "snapshots"
    with world.repo.transaction() as s:
        for status in ("promoted", "failed", "failed", "rejected", "failed", "failed"):
            run = start_retrain_run(s)
            finish_retrain_run(s, run.id, status=status, decision_reason="-")
            (snapshots / f"run-{run.id}" / "images").mkdir(parents=True)
            (snapshots / f"run-{run.id}" / "images" / "w.png").write_bytes(b"png")
        still_open = start_retrain_run(s).id  # a killed run's snapshot is what it resumes from
        (snapshots / f"run-{still_open}").mkdir(parents=True)
    with world.repo.transaction() as s:
        removed = apply_retention(s, cfg)
    assert sorted(p.name for p in removed if p.parent == snapshots) == ["run-2", "run-3"]
    assert sorted(p.name for p in snapshots.iterdir()) == ["run-1", "run-4", "run-5", "run-6", "run-7"]


def test_window_names_of_two_sources_that_read_alike_never_collide():
    names = {window_image_name(src, 7, 0, 200) for src in ("folder:cam/1", "folder:cam_1", "folder:cam:1")}
    assert len(names) == 3 and all(n.endswith("-7-0-200.png") for n in names)
