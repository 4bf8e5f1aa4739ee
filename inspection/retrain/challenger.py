"""The challenger: its training config (the recipe on the merged data, from the champion's weights), its
training (in this process or under torchrun; resumed from a checkpoint made with the same config), and its
publication into the registry as a bundle that stands alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets.settings import REPO_ROOT, load_config
from inspection.retrain.config import RetrainConfig
from inspection.retrain.merge import MergedData
from training.anomaly.store import BUNDLE_SUBDIR as ANOMALY_SUBDIR
from training.anomaly.store import load_anomaly
from training.bundle import MANIFEST, load_bundle, read_manifest
from training.config import TrainConfig

Log = Callable[[str], None]


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def build_train_config(
    cfg: RetrainConfig,
    *,
    class_names: list[str],
    init_from: str | None,
    merged: MergedData,
    out_dir: Path,
    name: str,
) -> TrainConfig:
    """The recipe with the merged data, the champion's architecture and weights (when fine-tuning), one
    evaluation at the end (nothing is selected on the fixed set) and no early stopping."""
    recipe = load_config(cfg.recipe.path, TrainConfig, cfg.recipe.overrides)
    data = recipe.model_dump(mode="json")
    if init_from is not None:
        manifest = read_manifest(init_from)
        arch = manifest["architecture"]
        section = arch[arch["family"]]
        section["weights"] = str(Path(init_from, manifest["weights"]["file"]).resolve())
        if "weights_backbone" in section:
            section["weights_backbone"] = None
        data["model"] = arch
    data["name"] = name
    data["data"].update(
        path=str(merged.export.resolve()),
        format="vott-json",
        images=None,
        split_file=str(merged.split_file.resolve()),
        subset=None,
        classes=list(class_names),
    )
    data["train"].update(
        out_dir=str(out_dir.resolve()), eval_every=data["train"]["epochs"], patience=None, device=cfg.device
    )
    return TrainConfig.model_validate(data)


def _checkpoint_matches(path: Path, train_cfg: TrainConfig, log: Log) -> bool:
    if not path.is_file():
        return False
    import torch  # heavy: only when a checkpoint is there to check

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: train again rather than fail forever
        log(f"checkpoint {path} is unreadable ({type(exc).__name__}); training starts over")
        return False
    if state.get("config") != train_cfg.model_dump(mode="json"):
        log(f"checkpoint {path} was made with another config; training starts over")
        return False
    return True


def train_challenger(train_cfg: TrainConfig, *, nproc: int, log: Log) -> tuple[Path, dict[str, Any]]:
    """Train (or resume, or skip when already done) and return the bundle folder and training facts."""
    out = Path(train_cfg.train.out_dir)
    bundle, done = out / "bundle", out / "done.json"
    if done.is_file() and bundle.is_dir():
        log("challenger already trained")
        return bundle, json.loads(done.read_text(encoding="utf-8"))
    resume = _checkpoint_matches(out / "last.pt", train_cfg, log)
    if not resume and out.exists():
        shutil.rmtree(out)
    if resume:
        log(f"resuming training from {out / 'last.pt'}")
    if nproc > 0:
        config_file = out.parent / "train_config.json"
        write_json(config_file, train_cfg.model_dump(mode="json"))
        cmd = [*torchrun_command(nproc), "-m", "inspection.cli", "train", str(config_file)]
        try:
            subprocess.run([*cmd, "--resume"] if resume else cmd, check=True, cwd=REPO_ROOT)
        except subprocess.CalledProcessError as exc:  # `steel retrain` reports RuntimeError as one line
            raise RuntimeError(
                f"training under torchrun ({config_file}) failed with exit status {exc.returncode}"
            ) from None
    else:
        from training.trainer import fit  # heavy (torch): only when training here

        fit(train_cfg, resume=resume)
    if not bundle.is_dir():
        raise RuntimeError(f"{out}: training wrote no bundle (its final evaluation had no finite mAP)")
    history = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    info = {
        "epochs": len(history),
        "seconds": history[-1].get("train_seconds") if history else 0.0,
        "resumed": resume,
        "out_dir": str(out),
    }
    write_json(done, info)
    return bundle, info


def torchrun_command(nproc: int) -> list[str]:
    """``torchrun --standalone --nproc_per_node=N`` through this interpreter (the venv's torch)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def publish_bundle(
    src: Path, dst: Path, *, version: str, metrics: dict[str, Any], retrain: dict[str, Any]
) -> dict[str, Any]:
    """Copy the trained bundle to the registry as ``version`` and return its manifest.

    The manifest's architecture stops pointing at the champion's weights file (the bundle's own weights
    are complete), so the challenger loads even after the champion's folder is gone. The copy is checked
    by loading it before it replaces ``dst``.
    """
    manifest = read_manifest(src)
    arch = manifest["architecture"]
    section = arch.get(arch.get("family"), {})
    for key in ("weights", "weights_backbone"):
        if key in section:
            section[key] = None
    manifest.update(version=version, name=version, metrics=metrics)
    manifest["training"] = {**(manifest.get("training") or {}), "retrain": retrain}
    calibrated = (retrain.get("operating_point") or {}).get("thresholds")
    if calibrated:  # where the detector, `steel eval` and the reject rule read a bundle's operating point
        manifest["thresholds"] = {**manifest["thresholds"], "per_class": dict(calibrated)}
    tmp = dst.parent / f".{dst.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    weights = manifest["weights"]["file"]
    shutil.copy2(src / weights, tmp / weights)
    if (src / ANOMALY_SUBDIR).is_dir():  # the anomaly model carried from the champion (job.carry_anomaly)
        shutil.copytree(src / ANOMALY_SUBDIR, tmp / ANOMALY_SUBDIR)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    load_bundle(tmp)
    if (tmp / ANOMALY_SUBDIR).is_dir():
        load_anomaly(tmp / ANOMALY_SUBDIR, backend="torch")  # a check that it loads: no export
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return read_manifest(dst)
