"""One-command GPU check (``make gpu-check``): prints one JSON report, in well under 8 minutes.

Run from the repository root: ``.venv/bin/python bench/gpu_check.py [--device auto] [--along 120]``.

1. **train_step**: one AMP (fp16) + channels_last training step of the shipped YOLO on real NEU-DET
   training images on the device, against the same step in float32 on the CPU: losses finite before and
   after the step, and within ``--loss-rtol`` of the CPU's.
2. **predictor_parity**: the same real validation images through ``Predictor`` on the CPU (float32 torch)
   and on the device (torch fp16, and ONNX Runtime's CUDA/TensorRT providers when installed): classes,
   boxes and scores compared detection by detection (fp16: within ``--box-px`` and ``--score-tol``).
3. **daemon**: ``steel inspect --once`` in-process over a simulated strip (NEU-DET validation images as a
   line-scan camera) per backend: tiles/s, frame latency p50/p99, peak/used device memory, and the raw
   backend's tiles/s on the same tiles (``bench_daemon.py``'s measurement) with the ratio.

Without a CUDA device (``--device auto``) it prints ``{"status": "skipped", "reason": "skipped: no CUDA
device", ...}`` and exits 0. ``--device cpu`` runs every step on the CPU instead (bfloat16 autocast for the
AMP step, ONNX Runtime's CPU provider): a dry run of the same code that the test suite uses. Exit status:
0 when every check passed (or was skipped), 1 when one failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository and bench/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_daemon as bd  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.readers import read_dataset  # noqa: E402
from datasets.settings import REPO_ROOT, data_root  # noqa: E402
from datasets.torch_dataset import DetectionDataset, collate_detection  # noqa: E402
from training.backends import GPU_PROVIDERS, ort_available, ort_providers  # noqa: E402
from training.bundle import load_bundle  # noqa: E402
from training.inference import Predictor, read_image  # noqa: E402

SKIP_REASON = "skipped: no CUDA device"
SPLIT = REPO_ROOT / "configs" / "splits" / "neu-det-dev.json"


def split_images(side: str, count: int) -> list[Path]:
    names = [item["name"] for item in json.loads(SPLIT.read_text())[side]]
    step = max(1, len(names) // count)
    return [data_root() / "images" / n for n in names[::step][:count]]


def real_batch(bundle: Any, count: int) -> tuple[Any, list[dict]]:
    """``count`` training images with their boxes, as the trainer feeds them (no augmentation)."""
    wanted = {p.name for p in split_images("train", count)}
    aset = read_dataset(data_root() / "annotations", class_names=bundle.class_names)
    records = [r for r in aset.images if Path(r.path).name in wanted]
    dataset = DetectionDataset(
        records, bundle.class_names, image_size=bundle.image_size, in_channels=bundle.in_channels
    )
    images, targets = collate_detection([dataset[i] for i in range(len(dataset))])
    return images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


def _loss_and_step(
    model: Any, images: Any, targets: list[dict], *, amp_dtype: Any, device: Any
) -> list[float]:
    """Loss before and after one AdamW step (GradScaler under fp16), on ``device``."""
    channels_last = device.type != "cpu" or amp_dtype is not None
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    images = images.to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    losses = []
    for step in range(2):
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = sum(model(images, targets).values())
        losses.append(float(loss.detach().float()))
        if step == 0:
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    return losses


def check_train_step(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    images, targets = real_batch(load_bundle(args.model), args.train_batch)
    torch.manual_seed(0)
    cpu = _loss_and_step(
        load_bundle(args.model).model, images, targets, amp_dtype=None, device=torch.device("cpu")
    )
    dev = _loss_and_step(load_bundle(args.model).model, images, targets, amp_dtype=amp_dtype, device=device)
    rel = [abs(a - b) / max(abs(a), 1e-6) for a, b in zip(cpu, dev, strict=True)]
    ok = all(math.isfinite(v) for v in cpu + dev) and max(rel) <= args.loss_rtol
    return {
        "ok": ok,
        "amp": str(amp_dtype).replace("torch.", ""),
        "channels_last": True,
        "images": len(images),
        "cpu_loss_before_after": [round(v, 5) for v in cpu],
        "device_loss_before_after": [round(v, 5) for v in dev],
        "max_relative_difference": round(max(rel), 5),
        "tolerance": args.loss_rtol,
    }


def compare(reference: list, other: list, *, box_px: float, score_tol: float) -> dict[str, Any]:
    """Detections matched per image by class and nearest box; counts of those outside the tolerances."""
    matched = unmatched = 0
    worst_box = worst_score = 0.0
    for ref, det in zip(reference, other, strict=True):
        unused = set(range(len(det)))
        for box, score, label in zip(ref.xyxy, ref.scores, ref.class_ids, strict=True):
            same = [j for j in unused if det.class_ids[j] == label]
            if not same:
                unmatched += 1
                continue
            j = min(same, key=lambda k: float(np.abs(det.xyxy[k] - box).max()))
            box_err, score_err = float(np.abs(det.xyxy[j] - box).max()), abs(float(det.scores[j] - score))
            if box_err > box_px or score_err > score_tol:
                unmatched += 1
                continue
            unused.remove(j)
            matched += 1
            worst_box, worst_score = max(worst_box, box_err), max(worst_score, score_err)
        unmatched += len(unused)
    total = max(1, matched + unmatched)
    return {
        "matched": matched,
        "unmatched": unmatched,
        "match_rate": round(matched / total, 4),
        "max_box_px": round(worst_box, 4),
        "max_score_diff": round(worst_score, 5),
    }


def device_backends(device: Any) -> list[str]:
    """torch always; ONNX Runtime on CUDA only with its CUDA/TensorRT provider (on the CPU in dry mode)."""
    if device.type != "cuda":
        return ["torch", "onnxruntime"] if ort_available() else ["torch"]
    return ["torch"] + (["onnxruntime"] if set(GPU_PROVIDERS) & set(ort_providers()) else [])


def check_parity(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    images = [read_image(str(p)) for p in split_images("val", args.parity_images)]
    reference = Predictor(str(args.model), device="cpu", backend="torch")(images)
    out: dict[str, Any] = {"images": len(images), "reference": "torch float32 on cpu", "backends": {}}
    for backend in device_backends(device):
        predictor = Predictor(str(args.model), device=device.type, backend=backend)
        row = compare(reference, predictor(images), box_px=args.box_px, score_tol=args.score_tol)
        row["runs_on"] = predictor.describe()
        row["ok"] = row["match_rate"] >= args.min_match
        out["backends"][backend] = row
    out["ok"] = all(r["ok"] for r in out["backends"].values())
    out["tolerances"] = {"box_px": args.box_px, "score": args.score_tol, "min_match_rate": args.min_match}
    return out


def check_daemon(args: argparse.Namespace, device: Any, backend: str) -> dict[str, Any]:
    ns = argparse.Namespace(
        model=args.model, device=device.type, backend=backend, int8=False, threads=None,
        batch_tiles=args.batch_tiles, across=4, along=args.along, frame_lines=600, overlap_lines=200,
        no_evidence=False,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        cfg = bd.make_config(ns, Path(tmp), source=bd.strip_uri(ns), name="run")
        batches, n_frames, _ = bd.strip_tiles(cfg)
        n_tiles = sum(len(b) for b in batches)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        raw, _, runs_on = bd.raw_model(cfg, batches, 1)
        usage, summary = bd.run_daemon(bd.make_config(ns, Path(tmp), source=cfg.source, name="daemon"))
    row: dict[str, Any] = {
        "runs_on": runs_on,
        "frames": summary["frames"],
        "tiles": n_tiles,
        "raw_tiles_per_s": round(n_tiles / raw.wall_s, 1),
        "daemon_tiles_per_s": round(n_tiles / usage.wall_s, 1),
        "ratio": round(raw.wall_s / usage.wall_s, 3),
        "latency_ms_p50": summary["latency_ms_p50"],
        "latency_ms_p99": summary["latency_ms_p99"],
        "ok": summary["frames"] == n_frames and not summary["frames_failed"],
    }
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info()
        row["torch_peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row["device_memory_used_mb"] = round((total - free) / 2**20, 1)  # ONNX Runtime's arena included
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "neu-yolo-n")
    parser.add_argument("--along", type=int, default=120, help="strip length in NEU images (200 lines each)")
    parser.add_argument("--batch-tiles", type=int, default=None, help="daemon batch (default: config)")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--parity-images", type=int, default=24)
    parser.add_argument("--loss-rtol", type=float, default=0.05)
    parser.add_argument("--box-px", type=float, default=2.0)
    parser.add_argument("--score-tol", type=float, default=0.02)
    parser.add_argument("--min-match", type=float, default=0.95)
    parser.add_argument("--budget-s", type=float, default=420.0, help="later sections are skipped past this")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    report: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if args.device == "auto" and not torch.cuda.is_available():
        report.update(status="skipped", reason=SKIP_REASON)
        return _emit(report, args.out, 0)
    if args.device == "cuda" and not torch.cuda.is_available():
        report.update(status="failed", reason="--device cuda: no CUDA device")
        return _emit(report, args.out, 1)
    device = torch.device("cuda" if args.device in ("auto", "cuda") else "cpu")
    report["device"] = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (dry run)"
    started = time.monotonic()
    sections = [("train_step", lambda: check_train_step(args, device))]
    sections.append(("predictor_parity", lambda: check_parity(args, device)))
    for backend in device_backends(device):
        sections.append((f"daemon_{backend}", lambda b=backend: check_daemon(args, device, b)))
    for name, run in sections:
        if time.monotonic() - started > args.budget_s:
            report[name] = {"ok": True, "skipped": f"time budget of {args.budget_s:.0f} s spent"}
            continue
        t0 = time.monotonic()
        try:
            report[name] = run()
        except Exception as exc:  # one failing section must not hide the others' figures
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        report[name]["seconds"] = round(time.monotonic() - t0, 1)
    report["seconds"] = round(time.monotonic() - started, 1)
    ok = all(report[name].get("ok", False) for name, _ in sections)
    report["status"] = "passed" if ok else "failed"
    return _emit(report, args.out, 0 if ok else 1)


def _emit(report: dict[str, Any], out: Path | None, code: int) -> int:
    text = json.dumps(report, indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
