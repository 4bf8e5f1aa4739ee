"""Benchmark: reading the NEU-DET VoTT JSON export (1,440 images) and auditing it.

Run from the repository root: ``.venv/bin/python -m bench.bench_read [--runs 5]``. Reading includes
resolving every image under ``data_root()/"images"``, its header and its SHA-256; the audit adds one
decode per image for the near-duplicate check. Target: reading under 3 s. Prints the median and
range of ``--runs`` timings as a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasets.audit import audit  # noqa: E402
from datasets.readers import read_dataset  # noqa: E402
from datasets.settings import data_root  # noqa: E402

READ_TARGET_S = 3.0


def _time(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per step (median reported)")
    parser.add_argument("--export", type=Path, default=None, help="VoTT JSON export (default: NEU-DET's)")
    args = parser.parse_args(argv)
    root = data_root()
    export = args.export or root / "vott" / "NEU-DET-steel-export.json"
    images = root / "images"

    def read() -> object:
        return read_dataset(export, format="vott-json", images_dir=images)

    aset = read_dataset(export, format="vott-json", images_dir=images)  # warm-up: page cache, imports
    rows = [
        ("read VoTT JSON export", _time(read, args.runs)),
        ("audit (incl. near-duplicates)", _time(lambda: audit(aset), args.runs)),
        ("audit (no image decode)", _time(lambda: audit(aset, near_dup_distance=None), args.runs)),
    ]
    print(f"{export.name}: {len(aset.images)} images, {aset.num_boxes} boxes, {args.runs} runs each\n")
    print("| step | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    for name, times in rows:
        print(f"| {name} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")
    read_median = statistics.median(rows[0][1])
    verdict = "meets" if read_median < READ_TARGET_S else "MISSES"
    print(f"\nreading {verdict} the {READ_TARGET_S:g} s target")
    return 0 if read_median < READ_TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
