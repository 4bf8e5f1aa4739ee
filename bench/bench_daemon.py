"""Benchmark: the inspection daemon end to end against the raw model on the same tiles.

Run from the repository root: ``.venv/bin/python bench/bench_daemon.py [--along 24] [--device auto]``.
The same command runs on a CUDA machine (``--device auto`` picks the GPU); give it a longer strip there
(``--along 300``) so the run is not dominated by start-up.

Three measurements on one simulated strip (NEU-DET validation images played as a line-scan camera):

1. **raw model**: the strip's frames are cut into tiles exactly as the daemon cuts them, then scored by the
   same detector in batches of ``detector.batch_tiles``, back to back: the ceiling for the daemon.
2. **daemon, saturated**: ``steel inspect --once`` in-process with the source unpaced (``line_rate=0``),
   every stage and the SQLite writer included. ``ratio`` = daemon tiles/s / raw tiles/s (target >= 0.9).
   Both are timed ``--repeat`` times, alternating raw and daemon (a fresh database each daemon run), and
   the fastest run of each counts: on a shared machine the slower runs measure the neighbours.
3. **daemon, paced** at ``--load`` (default 0.5) of the raw throughput: frame latency (capture to stored)
   p50/p99 on a line that the daemon can keep up with. Latency under saturation is queueing, not service.

CPU use is process CPU seconds per wall second (``resource.getrusage``: 1.0 = one core busy), memory the
process's peak resident set (and peak CUDA memory on a GPU). Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from datasets.settings import REPO_ROOT  # noqa: E402
from inspection.config import InspectionConfig  # noqa: E402
from inspection.daemon import Daemon  # noqa: E402
from inspection.detector import TileDetector  # noqa: E402
from inspection.inspect_cli import DEFAULT_CONFIG  # noqa: E402
from inspection.messages import Frame  # noqa: E402
from inspection.sources.strip_sim import StripSimulator  # noqa: E402
from inspection.tiling import cut_tiles, tile_grid  # noqa: E402
from training.inference import resolve_device  # noqa: E402

Summary: TypeAlias = dict[str, Any]  # a daemon run's summary, as ``RunSummary.to_dict()`` gives it

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


def make_config(args: argparse.Namespace, work: Path, *, source: str, name: str) -> InspectionConfig:
    """The shipped daemon config with this run's model, device, source, database and output folder."""
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data.update(source=source, db=f"sqlite:///{work / name / 'inspection.db'}", alarms=None)
    data["detector"].update(
        model=str(args.model),
        device=args.device,
        backend=args.backend,
        int8=args.int8,
        watch_db_promotions_s=None,
    )
    if args.threads:
        data["detector"]["threads"] = args.threads
    if args.batch_tiles:
        data["detector"]["batch_tiles"] = args.batch_tiles
    data["output"]["dir"] = str(work / name / "out")
    if args.no_evidence:
        data["output"].update(save_crops=False, save_frames="none", save_raw=False)
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
        threads=cfg.detector.threads,
        backend=cfg.detector.backend,
        int8=cfg.detector.int8,
    )  # loads and warms up
    device = resolve_device(cfg.detector.device)
    runs = []

    def score_all() -> None:
        for _ in range(repeat):
            with Meter() as meter:
                for batch in batches:
                    detector.detect(batch)  # detections come back on the host: each batch is finished
                if device.type == "cuda":
                    torch.cuda.synchronize()
            runs.append(meter.usage)

    # In a worker thread, as the daemon's detect stage runs it: torch's CPU thread pool behaves differently
    # in the main thread (on a busy machine its 2-thread regions ran 3x slower there than in a worker).
    worker = threading.Thread(target=score_all, name="bench-raw")
    worker.start()
    worker.join()
    return min(runs, key=lambda u: u.wall_s), detector.version, f"{device}, {detector.backend_description}"


def run_daemon(cfg: InspectionConfig) -> tuple[Usage, Summary]:
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
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of raw and saturated (best counts)")
    return parser.parse_args(argv)


@dataclass
class Runs:
    """What the three measurements found (the fastest raw and saturated runs)."""

    cfg: InspectionConfig
    version: str
    device: str
    n_frames: int
    n_tiles: int
    raw: Usage
    sat: Usage
    sat_summary: Summary
    paced: Usage | None
    paced_summary: Summary | None
    rss_mb: float
    cuda_mb: float | None


def measure(args: argparse.Namespace) -> Runs:
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        work = Path(tmp)
        cfg = make_config(args, work, source=strip_uri(args), name="saturated")
        batches, n_frames, lines = strip_tiles(cfg)
        n_tiles = sum(len(b) for b in batches)
        raw = sat = None
        sat_summary: Summary = {}
        # Raw and daemon runs alternate, so a neighbour's busy minute slows both alike.
        for i in range(args.repeat):  # a fresh database each time, or the frames would be skipped
            raw_i, version, device = raw_model(cfg, batches, 1)
            raw = raw_i if raw is None or raw_i.wall_s < raw.wall_s else raw
            usage, summary = run_daemon(make_config(args, work, source=cfg.source, name=f"saturated-{i}"))
            assert summary["frames"] == n_frames, summary
            if sat is None or usage.wall_s < sat.wall_s:
                sat, sat_summary = usage, summary
        assert raw is not None
        assert sat is not None
        paced = paced_summary = None
        if args.load > 0:
            line_rate = args.load * (n_tiles / raw.wall_s) * lines / n_tiles
            paced_cfg = make_config(args, work, source=strip_uri(args, line_rate), name="paced")
            paced, paced_summary = run_daemon(paced_cfg)
        return Runs(
            cfg=cfg,
            version=version,
            device=device,
            n_frames=n_frames,
            n_tiles=n_tiles,
            raw=raw,
            sat=sat,
            sat_summary=sat_summary,
            paced=paced,
            paced_summary=paced_summary,
            rss_mb=peak_rss_mb(),
            cuda_mb=_cuda_peak_mb(),
        )


def print_table(args: argparse.Namespace, runs: Runs) -> None:
    cfg, raw, sat, n_tiles, n_frames = runs.cfg, runs.raw, runs.sat, runs.n_tiles, runs.n_frames
    raw_tps, sat_tps = n_tiles / raw.wall_s, n_tiles / sat.wall_s
    tile_px = cfg.tiling.tile_hw[0] * cfg.tiling.tile_hw[1]
    print(
        f"model {runs.version} on {runs.device}; strip {args.across}x{args.along} images, {n_frames} frames "
        f"of {args.frame_lines} lines (overlap {args.overlap_lines}), {n_tiles} tiles of "
        f"{cfg.tiling.tile_hw}, batches of {cfg.detector.batch_tiles}\n"
    )
    print(
        "| run | wall s | tiles/s | Mpx/s | frames/s | ratio | latency p50 ms | latency p99 ms | CPU cores |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| raw model | {raw.wall_s:.2f} | {raw_tps:.1f} | {raw_tps * tile_px / 1e6:.2f} | | 1.00 | | | "
        f"{raw.cores:.2f} |"
    )
    print(
        f"| daemon, saturated | {sat.wall_s:.2f} | {sat_tps:.1f} | {sat_tps * tile_px / 1e6:.2f} | "
        f"{n_frames / sat.wall_s:.2f} | {sat_tps / raw_tps:.2f} | {runs.sat_summary['latency_ms_p50']} | "
        f"{runs.sat_summary['latency_ms_p99']} | {sat.cores:.2f} |"
    )
    paced, paced_summary = runs.paced, runs.paced_summary
    if paced is not None and paced_summary is not None:
        print(
            f"| daemon, paced at {args.load:.0%} | {paced.wall_s:.2f} | {n_tiles / paced.wall_s:.1f} | "
            f"{n_tiles / paced.wall_s * tile_px / 1e6:.2f} | {n_frames / paced.wall_s:.2f} | | "
            f"{paced_summary['latency_ms_p50']} | {paced_summary['latency_ms_p99']} | {paced.cores:.2f} |"
        )
    memory = f"peak RSS {runs.rss_mb:.0f} MB" + (
        f", peak CUDA memory {runs.cuda_mb:.0f} MB" if runs.cuda_mb is not None else ""
    )
    ratio = sat_tps / raw_tps
    verdict = "meets" if ratio >= RATIO_TARGET else "MISSES"
    print(f"\n{memory}\nend-to-end / raw = {ratio:.2f}: {verdict} the {RATIO_TARGET} target")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    print_table(args, measure(args))
    return 0


def _cuda_peak_mb() -> float | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


if __name__ == "__main__":
    raise SystemExit(main())
