"""Benchmark: the inspection daemon end to end against the raw model on the same tiles.

Run from the repository root: ``.venv/bin/python bench/bench_daemon.py [--along 24] [--device auto]``; on a
CUDA machine give it a longer strip (``--along 300``) so start-up does not dominate.

Three measurements on one simulated strip (NEU-DET validation images played as a line-scan camera):

1. **raw model**: the strip's frames cut into tiles as the daemon cuts them, scored by the same detector in
   batches of ``detector.batch_tiles`` with as many calls in flight as the daemon has: its ceiling.
2. **daemon, saturated**: ``steel inspect --once`` in-process, source unpaced, every stage and the SQLite
   writer included; ``ratio`` = daemon tiles/s / raw tiles/s. Raw and daemon alternate ``--repeat``
   times (a fresh database each run); the fastest of each counts (slower runs measure the neighbours).
3. **daemon, paced** at ``--load`` of the raw throughput: frame latency (capture to stored) p50/p99.

Set-ups are interleaved round by round: ``--backends torch,onnxruntime,onnxruntime-int8`` x
``--detect-workers 1,2`` (model calls in flight) x ``--evidence-workers 0,2`` (0: the sink writes the
evidence itself). ``--no-anomaly`` compares the daemon with the one model it then runs.

CPU is process CPU seconds (``resource.getrusage``), memory the peak resident set (and CUDA memory on a
GPU). Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from datasets.settings import REPO_ROOT  # noqa: E402
from inspection.config import InspectionConfig  # noqa: E402
from inspection.daemon import Daemon  # noqa: E402
from inspection.detector import TileDetector, threads_per_call  # noqa: E402
from inspection.inspect_cli import DEFAULT_CONFIG  # noqa: E402
from inspection.messages import Frame  # noqa: E402
from inspection.sources.strip_sim import StripSimulator  # noqa: E402
from inspection.tiling import cut_tiles, tile_grid  # noqa: E402
from training.inference import resolve_device  # noqa: E402

RATIO_TARGET = 0.9
MODEL_CANDIDATES = (REPO_ROOT / "models" / "neu-yolo-n", REPO_ROOT / "runs" / "neu-yolo-n" / "bundle")


@dataclass
class Usage:
    """Wall and CPU seconds of one phase."""

    wall_s: float
    cpu_s: float

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


class Meter:
    def __enter__(self) -> Meter:
        self._wall = time.perf_counter()
        self._cpu = _cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.usage = Usage(time.perf_counter() - self._wall, _cpu_seconds() - self._cpu)


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def strip_uri(args: argparse.Namespace, line_rate: float = 0.0) -> str:
    spec = {
        "across": args.across,
        "along": args.along,
        "frame_lines": args.frame_lines,
        "overlap_lines": args.overlap_lines,
        "split": "val",
        "coil": "bench",
        "line_rate": round(line_rate, 1),
    }
    return "strip-sim:" + ",".join(f"{k}={v}" for k, v in spec.items())


@dataclass(frozen=True)
class Variant:
    """One daemon set-up measured in a run: the model's runtime and who writes the evidence files."""

    backend: str  # auto | torch | onnxruntime
    int8: bool = False
    evidence_workers: int | None = None  # None: the config's; 0: the sink writes evidence itself
    evidence_nice: int | None = None  # None: the config's (how much lower the writers' OS priority is)
    detect_workers: int | None = None  # None: the config's (model calls in flight at once)

    @property
    def runtime(self) -> str:
        name = f"{self.backend} int8" if self.int8 else self.backend
        return name if self.detect_workers is None else f"{name} x{self.detect_workers} calls"

    @property
    def label(self) -> str:
        if self.evidence_workers is None:
            return self.runtime
        where = "in the sink" if self.evidence_workers == 0 else f"{self.evidence_workers} writer threads"
        nice = (
            ""
            if self.evidence_nice is None or self.evidence_workers == 0
            else f" at nice +{self.evidence_nice}"
        )
        return f"{self.runtime}, evidence {where}{nice}"


def parse_variants(args: argparse.Namespace) -> list[Variant]:
    """``--backends torch,onnxruntime,onnxruntime-int8`` x ``--evidence-workers 0,2`` (or ``--backend``)."""
    runtimes = [(args.backend, args.int8)]
    if args.backends:
        runtimes = [(name.removesuffix("-int8"), name.endswith("-int8")) for name in args.backends.split(",")]
    writers: list[tuple[int | None, int | None]] = [(None, None)]
    if args.evidence_workers:  # "2" or "2:0" (two writers at the model's priority)
        writers = [_writers(spec) for spec in args.evidence_workers.split(",")]
    calls: list[int | None] = [None]
    if args.detect_workers:
        calls = [int(n) for n in args.detect_workers.split(",")]
    return [Variant(b, i8, w, nice, c) for b, i8 in runtimes for c in calls for w, nice in writers]


def _writers(spec: str) -> tuple[int | None, int | None]:
    workers, _, nice = spec.partition(":")
    return int(workers), int(nice) if nice else None


def make_config(
    args: argparse.Namespace, work: Path, *, source: str, name: str, variant: Variant | None = None
) -> InspectionConfig:
    """The shipped daemon config with this run's model, device, source, database and output folder."""
    variant = variant or Variant(args.backend, args.int8)
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data.update(source=source, db=f"sqlite:///{work / name / 'inspection.db'}", alarms=None)
    data["detector"].update(
        model=str(args.model),
        device=args.device,
        backend=variant.backend,
        int8=variant.int8,
        watch_db_promotions_s=None,
    )
    if args.threads:
        data["detector"]["threads"] = args.threads
    if variant.detect_workers is not None:
        data["detector"]["workers"] = variant.detect_workers
    if args.batch_tiles:
        data["detector"]["batch_tiles"] = args.batch_tiles
    data["output"]["dir"] = str(work / name / "out")
    if variant.evidence_workers is not None:
        data["output"]["evidence_workers"] = variant.evidence_workers
    if variant.evidence_nice is not None:
        data["output"]["evidence_nice"] = variant.evidence_nice
    if args.no_evidence:
        data["output"].update(save_crops=False, save_frames="none", save_raw=False)
    if getattr(args, "no_crops", False):  # frames and raw pixels kept; the dashboard cuts crops from them
        data["output"]["save_crops"] = False
    if getattr(args, "no_anomaly", False):
        data["anomaly"]["enabled"] = False
    return InspectionConfig.model_validate(data)


def strip_tiles(cfg: InspectionConfig) -> tuple[list[np.ndarray], int, int]:
    """Every tile the daemon will score (in batches of ``batch_tiles``), the frame count and strip lines."""
    sim = StripSimulator.from_spec(cfg.source.partition(":")[2], line_rate=0)
    frames = [event for event in sim if isinstance(event, Frame)]
    tiles = []
    for frame in frames:
        grid = tile_grid((frame.height, frame.width), cfg.tiling.tile_hw, cfg.tiling.overlap_hw)
        tiles.append(cut_tiles(frame.image, grid, cfg.tiling.tile_hw))
    batch = cfg.detector.batch_tiles
    flat = np.concatenate(tiles)
    return [flat[i : i + batch] for i in range(0, len(flat), batch)], len(frames), sim.strip_hw[0]


def raw_model(cfg: InspectionConfig, batches: list[np.ndarray], repeat: int) -> tuple[Usage, str, str]:
    detector = TileDetector(
        cfg.detector.model,
        device=cfg.detector.device,
        batch_size=cfg.detector.batch_tiles,
        score_threshold=cfg.detector.score_threshold,
        threads=threads_per_call(cfg.detector.threads, cfg.detector.workers),
        backend=cfg.detector.backend,
        int8=cfg.detector.int8,
    )  # loads and warms up
    device = resolve_device(cfg.detector.device)
    calls = cfg.detector.workers
    runs = []

    def score_share(k: int) -> None:
        for batch in batches[k::calls]:
            detector.detect(batch)  # detections come back on the host: each batch is finished

    for _ in range(repeat):
        # In worker threads (as many as the daemon's model calls in flight), as the detect stage runs it:
        # torch's CPU thread pool behaves differently in the main thread (on a busy machine its 2-thread
        # regions ran 3x slower there than in a worker).
        workers = [
            threading.Thread(target=score_share, args=(k,), name=f"bench-raw-{k}") for k in range(calls)
        ]
        with Meter() as meter:
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            if device.type == "cuda":
                torch.cuda.synchronize()
        runs.append(meter.usage)
    return min(runs, key=lambda u: u.wall_s), detector.version, f"{device}, {detector.backend_description}"


def run_daemon(cfg: InspectionConfig) -> tuple[Usage, dict[str, Any]]:
    daemon = Daemon(cfg, once=True)
    daemon.start()  # loads and warms up the model, migrates the database (outside the measured run)
    with Meter() as meter:
        summary = daemon.run()
    return meter.usage, summary.to_dict()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_model = next(
        (p for p in MODEL_CANDIDATES if (p / "manifest.json").is_file()), MODEL_CANDIDATES[0]
    )
    parser.add_argument("--model", type=Path, default=default_model, help="model bundle folder")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime"])
    parser.add_argument("--int8", action="store_true", help="onnxruntime's int8 export (make it first)")
    for flag, example in (  # each value in the list is one daemon set-up, all interleaved in one run
        ("--backends", "torch,onnxruntime,onnxruntime-int8"),
        ("--detect-workers", "1,2 (model calls in flight; the raw model is run the same way)"),
        ("--evidence-workers", "0,2,2:0 (0: the sink writes; 2:0 two writers at nice +0)"),
    ):
        parser.add_argument(flag, default=None, help=f"several set-ups, e.g. {example}")
    parser.add_argument("--no-anomaly", action="store_true", help="anomaly stage off (the detector only)")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for the model (default: torch's)"
    )
    parser.add_argument(
        "--batch-tiles", type=int, default=None, help="tiles per model batch (default: config)"
    )
    parser.add_argument("--across", type=int, default=4, help="images across the strip (200 px each)")
    parser.add_argument("--along", type=int, default=24, help="images along the strip (200 lines each)")
    parser.add_argument("--frame-lines", type=int, default=600)
    parser.add_argument("--overlap-lines", type=int, default=200)
    parser.add_argument(
        "--load", type=float, default=0.5, help="paced run at this share of raw speed (0: skip)"
    )
    parser.add_argument(
        "--no-evidence", action="store_true", help="store rows only: no crops, frame images or raw frames"
    )
    parser.add_argument(
        "--no-crops", action="store_true", help="no crop files (save_crops: false); frames still kept"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of raw and saturated (best counts)")
    parser.add_argument(
        "--work-dir",
        default=None,
        help="where the databases and evidence files go (default: $TMPDIR); a tmpfs such as /dev/shm "
        "leaves out what creating files costs on this machine's disk",
    )
    return parser.parse_args(argv)


@dataclass
class Measured:
    """The best raw and saturated runs of one set-up, and its paced run."""

    raw: Usage | None = None
    sat: Usage | None = None
    sat_summary: dict[str, Any] = field(default_factory=dict)
    paced: Usage | None = None
    paced_summary: dict[str, Any] = field(default_factory=dict)


def measure(
    args: argparse.Namespace,
    work: Path,
    variants: list[Variant],
    batches: list[np.ndarray],
    source: str,
    lines: int,
) -> tuple[dict[Variant, Measured], str]:
    """Rounds of (raw model, daemon) per set-up, interleaved so a neighbour's busy minute slows all alike;
    a fresh database for every daemon run (or its frames would be skipped as stored)."""
    n_tiles = sum(len(b) for b in batches)
    results = {v: Measured() for v in variants}
    runs_on = ""
    for i in range(args.repeat):
        raw_of: dict[str, Usage] = {}  # one raw run per runtime per round
        for j, v in enumerate(variants):
            m = results[v]
            if v.runtime not in raw_of:
                cfg = make_config(args, work, source=source, name="raw", variant=v)
                raw_of[v.runtime], version, device = raw_model(cfg, batches, 1)
                runs_on += f"{v.runtime}: {version} on {device}; " if i == 0 else ""
            raw = raw_of[v.runtime]
            m.raw = raw if m.raw is None or raw.wall_s < m.raw.wall_s else m.raw
            cfg = make_config(args, work, source=source, name=f"saturated-{i}-{j}", variant=v)
            usage, summary = run_daemon(cfg)
            if m.sat is None or usage.wall_s < m.sat.wall_s:
                m.sat, m.sat_summary = usage, summary
    for j, v in enumerate(variants):
        m = results[v]
        if args.load > 0 and m.raw is not None:
            line_rate = args.load * (n_tiles / m.raw.wall_s) * lines / n_tiles
            cfg = make_config(args, work, source=strip_uri(args, line_rate), name=f"paced-{j}", variant=v)
            m.paced, m.paced_summary = run_daemon(cfg)
    return results, runs_on


def print_table(
    args: argparse.Namespace, results: dict[Variant, Measured], n_tiles: int, n_frames: int
) -> None:
    print(
        "| daemon set-up | raw tiles/s | daemon tiles/s | ratio | raw CPU ms/tile | daemon CPU ms/tile | "
        f"CPU ratio | "
        f"paced at {args.load:.0%}: p50 / p99 ms | p99 / p50 | frames stored |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, m in results.items():
        assert m.raw is not None and m.sat is not None
        raw_tps, sat_tps = n_tiles / m.raw.wall_s, n_tiles / m.sat.wall_s
        paced = spread = ""
        if m.paced is not None:
            p50, p99 = m.paced_summary["latency_ms_p50"], m.paced_summary["latency_ms_p99"]
            paced, spread = f"{p50:.0f} / {p99:.0f}", f"{p99 / p50:.2f}" if p50 else ""
        print(
            f"| {v.label} | {raw_tps:.1f} | {sat_tps:.1f} | **{sat_tps / raw_tps:.2f}** | "
            f"{m.raw.cpu_s * 1000 / n_tiles:.2f} | {m.sat.cpu_s * 1000 / n_tiles:.2f} | "
            f"{m.raw.cpu_s / m.sat.cpu_s:.2f} | {paced} | {spread} | "
            f"{m.sat_summary['frames']}/{n_frames} |"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    variants = parse_variants(args)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-daemon-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        cfg = make_config(args, work, source=strip_uri(args), name="tiles", variant=variants[0])
        batches, n_frames, lines = strip_tiles(cfg)
        n_tiles = sum(len(b) for b in batches)
        results, runs_on = measure(args, work, variants, batches, cfg.source, lines)
        rss, cuda_mb = peak_rss_mb(), _cuda_peak_mb()
    evidence = "off" if args.no_evidence else "written" + (" without crop files" if args.no_crops else "")
    print(
        f"{runs_on}\nstrip {args.across}x{args.along} images, {n_frames} frames of {args.frame_lines} lines "
        f"(overlap {args.overlap_lines}), {n_tiles} tiles of {cfg.tiling.tile_hw}, batches of "
        f"{cfg.detector.batch_tiles}, anomaly stage {'off' if args.no_anomaly else 'as configured'}, "
        f"evidence {evidence} "
        f"under {args.work_dir or tempfile.gettempdir()}; "
        f"best of {args.repeat}\n"
        f"load average (1/5/15 min) before {_load(load_before)}, after {_load(os.getloadavg())}\n"
    )
    print_table(args, results, n_tiles, n_frames)
    memory = f"peak RSS {rss:.0f} MB" + (
        f", peak CUDA memory {cuda_mb:.0f} MB" if cuda_mb is not None else ""
    )
    print(
        f"\n{memory}; ratio = daemon tiles/s / raw model tiles/s (target >= {RATIO_TARGET}); CPU ratio = raw "
        "CPU per tile / daemon CPU per tile, the ratio a CPU-bound machine with no neighbours would reach"
    )
    complete = all(m.sat_summary.get("frames") == n_frames for m in results.values())
    return 0 if complete else 1


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def _cuda_peak_mb() -> float | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


if __name__ == "__main__":
    raise SystemExit(main())
