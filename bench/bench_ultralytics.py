"""Benchmark: Ultralytics YOLOv8n trained from its yaml on our split, side by side with our YOLO-n run.

Ultralytics is AGPL: it is never a dependency of this project. It lives in a separate bench venv
(``.bench-venv``, see bench/README.md) and runs there as a subprocess; this script, run with the
project's venv, only prepares its data and scores its predictions. Offline: ``YOLO_OFFLINE=1`` and a
local font copied to ``$YOLO_CONFIG_DIR/Ultralytics/Arial.ttf`` so nothing is downloaded.

Steps:
1. Convert the split (``--split``, default the shipped recipe's) to YOLO txt labels with our writer
   (``datasets.writers.write_yolo``), symlink the images beside them and write a data yaml.
2. In the bench venv: ``YOLO("yolov8n.yaml").train(...)`` from scratch at the same image size, batch
   and epoch count, CPU, ``workers=0``, images cached in RAM (our trainer preloads too). Training time
   is taken from the epoch start/end callbacks, so validation is not counted.
3. Its best weights predict the validation images (conf 0.001); we score them with our evaluator
   (pycocotools), the same code that scores our bundles, and print its own mAP50 beside it.
4. Our figures come from our run folder (``--ours``): ``metrics.json`` at the same epoch count.

Run from the repository root, e.g. ``.venv/bin/python bench/bench_ultralytics.py --epochs 60``.
``--rescore`` scores the run kept in ``--work`` again without training (the figures plus AP50 per class).
A smoke run: ``--epochs 1 --fraction 0.012`` (14 training images).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, TypeAlias

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from datasets.model import AnnotatedSet  # noqa: E402
from datasets.readers import read_dataset  # noqa: E402
from datasets.settings import REPO_ROOT, data_root, load_config  # noqa: E402
from datasets.split import apply_split, read_split  # noqa: E402
from datasets.writers.yolo import write_yolo  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.evaluation import Prediction, evaluate, ground_truth_from_records  # noqa: E402
from training.registry import build_model  # noqa: E402

Figures: TypeAlias = dict[str, Any]  # JSON-ready figures of one model (printed, and written with --out)

RECIPE = REPO_ROOT / "configs" / "train" / "yolo_n.yaml"

# Runs inside the bench venv: imports nothing from this project.
DRIVER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    args = json.loads(Path(sys.argv[1]).read_text())
    import torch

    torch.set_num_threads(args["threads"])
    import ultralytics
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")  # the architecture from its yaml: random init, no weights
    started, epoch_seconds = {}, []
    model.add_callback("on_train_epoch_start", lambda t: started.update(t=time.perf_counter()))
    model.add_callback(
        "on_train_epoch_end", lambda t: epoch_seconds.append(time.perf_counter() - started["t"])
    )
    model.train(
        data=args["data"], epochs=args["epochs"], imgsz=args["imgsz"], batch=args["batch"],
        fraction=args["fraction"], device="cpu", workers=0, cache=args["cache"], pretrained=False,
        amp=False, plots=False, val=args["val"], seed=0, deterministic=True,
        project=args["project"], name="train", exist_ok=True, verbose=False,
    )
    trainer = model.trainer
    best = trainer.best if Path(trainer.best).exists() else trainer.last
    own = {k: float(v) for k, v in (trainer.metrics or {}).items()}
    detector = YOLO(str(best))
    predictions = {}
    for result in detector.predict(
        source=args["val_images"], imgsz=args["imgsz"], conf=0.001, iou=0.7, max_det=300,
        device="cpu", stream=True, verbose=False,
    ):
        boxes = result.boxes
        predictions[Path(result.path).name] = {
            "xyxy": boxes.xyxy.tolist(),
            "scores": boxes.conf.tolist(),
            "labels": boxes.cls.int().tolist(),
        }
    summary = {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in detector.model.parameters()),
        "train_images": len(trainer.train_loader.dataset),
        "epochs": len(epoch_seconds),
        "train_seconds": sum(epoch_seconds),
        "own_metrics": own,
        "best": str(best),
    }
    Path(args["summary"]).write_text(json.dumps(summary, indent=2))
    Path(args["predictions"]).write_text(json.dumps(predictions))
    """
)


def prepare(work: Path, train: AnnotatedSet, val: AnnotatedSet) -> Path:
    """Ultralytics' layout: ``images/<side>/*.jpg`` (symlinks) beside ``labels/<side>/*.txt``."""
    for side, aset in (("train", train), ("val", val)):
        images, labels = work / "images" / side, work / "labels" / side
        for folder in (images, labels):
            shutil.rmtree(folder, ignore_errors=True)
        images.mkdir(parents=True)
        for record in aset.images:
            if record.path is None:
                raise ValueError(f"{record.name}: no image file to link")
            (images / record.name).symlink_to(Path(record.path).resolve())
        write_yolo(aset, labels)
        (labels / "classes.txt").unlink()  # ours, not Ultralytics': keep its label folder to labels only
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(train.class_names))
    data_yaml = work / "data.yaml"
    data_yaml.write_text(f"path: {work}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data_yaml


def install_font(config_dir: Path) -> None:
    """Ultralytics downloads Arial.ttf for its plots unless one is already there: give it a local font."""
    target = config_dir / "Ultralytics" / "Arial.ttf"
    if target.is_file():
        return
    fonts = sorted(Path("/usr/share/fonts").rglob("*.ttf")) if Path("/usr/share/fonts").is_dir() else []
    if fonts:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(next((f for f in fonts if "Sans-Regular" in f.name), fonts[0]), target)


def run_ultralytics(args: argparse.Namespace, work: Path, data_yaml: Path, val: AnnotatedSet) -> Figures:
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    job = {
        "data": str(data_yaml),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "fraction": args.fraction,
        "cache": args.cache,
        "val": args.val_each_epoch,
        "threads": args.threads,
        "project": str(work / "runs"),
        "val_images": [str(work / "images" / "val" / r.name) for r in val.images],
        "summary": str(work / "ultralytics_summary.json"),
        "predictions": str(work / "ultralytics_predictions.json"),
    }
    (work / "job.json").write_text(json.dumps(job, indent=2))
    config_dir = work / "config"
    install_font(config_dir)
    env = {
        **os.environ,
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(config_dir),
        "OMP_NUM_THREADS": str(args.threads),
    }
    env.pop("PYTHONPATH", None)
    subprocess.run([args.bench_python, str(driver), str(work / "job.json")], cwd=work, env=env, check=True)
    return load_previous(work)


def load_previous(work: Path) -> Figures:
    """The summary and predictions the driver left in ``work`` (``--rescore``)."""
    job = json.loads((work / "job.json").read_text())
    summary = json.loads(Path(job["summary"]).read_text())
    summary["predictions"] = json.loads(Path(job["predictions"]).read_text())
    return summary


def score(predictions: dict[str, dict], val: AnnotatedSet) -> Figures:
    """Ultralytics' detections scored with our evaluator (pycocotools), like our bundles."""
    preds = []
    for record in val.images:
        p = predictions.get(record.name, {"xyxy": [], "scores": [], "labels": []})
        preds.append(
            Prediction(
                np.asarray(p["xyxy"], dtype=np.float64).reshape(-1, 4),
                np.asarray(p["scores"], dtype=np.float64),
                np.asarray(p["labels"], dtype=np.int64),
            )
        )
    gts = ground_truth_from_records(val.images, val.class_names)
    result = evaluate(gts, preds, val.class_names, conf_threshold=0.25)
    per_class = {name: float(c["ap50"]) for name, c in result.per_class.items()}
    return {"map50": result.map50, "map50_95": result.map50_95, "images": result.images, "ap50": per_class}


def ours_at(run_dir: Path, epochs: int, batch: int) -> Figures | None:
    """Our run's mAP@0.5 at (or just before) ``epochs`` and its trainer img/s up to there."""
    metrics = run_dir / "metrics.json"
    manifest = run_dir / "bundle" / "manifest.json"
    if not metrics.is_file() or not manifest.is_file():
        return None
    rows = [r for r in json.loads(metrics.read_text()) if r["epoch"] <= epochs]
    scored = [r for r in rows if r.get("map50") is not None]
    if not rows or not scored:
        return None
    manifest_data = json.loads(manifest.read_text())
    train_images = manifest_data["split"]["train_images"]
    last = rows[-1]
    # Per-class AP50 only where the run's bundle was scored at that very epoch (its manifest's metrics).
    bundle_metrics = manifest_data.get("metrics") or {}
    ap50 = None
    if bundle_metrics.get("epoch") == scored[-1]["epoch"]:
        ap50 = {name: c["ap50"] for name, c in bundle_metrics.get("per_class", {}).items()}
    return {
        "ap50": ap50,
        "epoch": scored[-1]["epoch"],
        "map50": scored[-1]["map50"],
        "map50_95": scored[-1].get("map50_95"),
        "best_map50": max(r["map50"] for r in scored),
        "img_s": train_images // batch * batch * last["epoch"] / last["train_seconds"],
    }


def parse_args(recipe: TrainConfig, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-python", default=str(REPO_ROOT / ".bench-venv" / "bin" / "python"))
    parser.add_argument("--epochs", type=int, default=recipe.train.epochs)
    parser.add_argument("--imgsz", type=int, default=recipe.model.image_size)
    parser.add_argument("--batch", type=int, default=recipe.train.batch_size)
    parser.add_argument("--fraction", type=float, default=1.0, help="of the training images (smoke runs)")
    parser.add_argument("--cache", default="ram", choices=["ram", "disk", "False"])
    parser.add_argument("--val-each-epoch", action="store_true", help="Ultralytics validates every epoch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split", type=Path, default=REPO_ROOT / (recipe.data.split_file or ""))
    parser.add_argument("--ours", type=Path, default=REPO_ROOT / recipe.train.out_dir, help="our run folder")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "var" / "bench-ultralytics")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument(
        "--rescore", action="store_true", help="score the last run kept in --work again; train nothing"
    )
    args = parser.parse_args(argv)
    if args.cache == "False":
        args.cache = False
    return args


def print_comparison(
    args: argparse.Namespace,
    *,
    train: AnnotatedSet,
    val: AnnotatedSet,
    theirs: Figures,
    theirs_scored: Figures,
    ours: Figures | None,
    our_params: int,
) -> float:
    """The Markdown table of both models; returns Ultralytics' training images per second."""
    own = theirs["own_metrics"].get("metrics/mAP50(B)")
    print(
        f"\n{len(train.images)} train / {len(val.images)} val images of {args.split.name}, "
        f"{args.imgsz} px, batch {args.batch}, {args.epochs} epochs, {args.threads} threads\n"
    )
    print("| model | params | train img/s | val mAP@0.5 (pycocotools) | mAP@0.5:0.95 | own mAP@0.5 |")
    print("|---|---:|---:|---:|---:|---:|")
    img_s = theirs["train_images"] * theirs["epochs"] / max(theirs["train_seconds"], 1e-9)
    print(
        f"| Ultralytics {theirs['ultralytics']} YOLOv8n (from yaml) | {theirs['parameters'] / 1e6:.2f}M "
        f"| {img_s:.1f} | {theirs_scored['map50']:.3f} | {theirs_scored['map50_95']:.3f} "
        f"| {'-' if own is None else f'{own:.3f}'} |"
    )
    if ours is None:
        print(f"| ours | - | - | - | - | - |  (no run with metrics at {args.ours})")
    else:
        print(
            f"| ours (YOLO-n, epoch {ours['epoch']}) | {our_params / 1e6:.2f}M | {ours['img_s']:.1f} "
            f"| {ours['map50']:.3f} "
            f"| {ours['map50_95']:.3f} | - |"
        )
    return img_s


def print_per_class(val: AnnotatedSet, theirs_scored: Figures, ours: Figures | None) -> None:
    rows = [("Ultralytics YOLOv8n", theirs_scored["ap50"])]
    if ours is not None and ours["ap50"]:
        rows.append((f"ours (epoch {ours['epoch']})", ours["ap50"]))
    print("\nAP50 per class (pycocotools)\n")
    print("| model | " + " | ".join(val.class_names) + " |")
    print("|---|" + "---:|" * len(val.class_names))
    for label, ap50 in rows:
        print(
            f"| {label} | " + " | ".join(f"{ap50.get(n, float('nan')):.3f}" for n in val.class_names) + " |"
        )


def main(argv: list[str] | None = None) -> int:
    recipe = load_config(RECIPE, TrainConfig)
    args = parse_args(recipe, argv)
    if not Path(args.bench_python).is_file():
        print(f"{args.bench_python}: no bench venv; see bench/README.md", file=sys.stderr)
        return 2

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    aset = read_dataset(data_root() / "annotations", class_names=recipe.data.classes)
    train, val = apply_split(aset, read_split(args.split))
    if args.rescore:
        theirs = load_previous(work)
    else:
        theirs = run_ultralytics(args, work, prepare(work, train, val), val)
    theirs_scored = score(theirs.pop("predictions"), val)
    ours = ours_at(args.ours, args.epochs, args.batch)
    our_params = sum(
        p.numel() for p in build_model(recipe.model, num_classes=len(recipe.data.classes)).parameters()
    )
    img_s = print_comparison(
        args,
        train=train,
        val=val,
        theirs=theirs,
        theirs_scored=theirs_scored,
        ours=ours,
        our_params=our_params,
    )
    print_per_class(val, theirs_scored, ours)
    if args.out:
        figures = {"ultralytics": {**theirs, **theirs_scored, "img_s": img_s}, "ours": ours}
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
