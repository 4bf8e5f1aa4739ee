"""Benchmark: classical texture feature extraction speed, tiles/s per feature group, on 1 and 2 cores.

Run from the repository root: ``.venv/bin/python bench/bench_classic.py [--tiles 400] [--tile-px 64]``.
Tiles are cut from real NEU-DET images (``data_root()/"images"``) and decoded before timing; each worker
process is held to one thread (OpenCV, BLAS), so "2 cores" is two processes splitting the tiles. The
``all`` row is the whole vector as ``extract`` computes it (grayscale, padding, blur included). Prints a
Markdown table for the README; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from datasets.settings import data_root  # noqa: E402
from datasets.texture.features import extract, group_features, prepare  # noqa: E402
from datasets.texture.settings import GROUPS, FeatureSettings  # noqa: E402


def load_tiles(count: int, tile_px: int) -> list[np.ndarray]:
    """``count`` tiles, round-robin over the NEU images in name order, each cut at a fixed offset grid."""
    paths = sorted((data_root() / "images").glob("*.jpg"))
    if not paths:
        raise SystemExit(f"no NEU-DET images under {data_root() / 'images'} (set STEEL_DATA)")
    tiles: list[np.ndarray] = []
    k = 0
    while len(tiles) < count:
        gray = cv2.imread(str(paths[k % len(paths)]), cv2.IMREAD_GRAYSCALE)
        h, w = gray.shape
        for y in range(0, h - tile_px + 1, tile_px):
            for x in range(0, w - tile_px + 1, tile_px):
                tiles.append(np.ascontiguousarray(gray[y : y + tile_px, x : x + tile_px]))
        k += 1
    return tiles[:count]


def _run(job: tuple[list[np.ndarray], str]) -> float:
    """Seconds for one group (or ``all``) over the tiles, in this process."""
    cv2.setNumThreads(1)
    tiles, group = job
    settings = FeatureSettings()
    start = time.perf_counter()
    for tile in tiles:
        if group == "all":
            extract(tile, settings)
        else:
            group_features(prepare(tile, settings), group, settings)  # type: ignore[arg-type]
    return time.perf_counter() - start


def tiles_per_s(tiles: list[np.ndarray], group: str, workers: int, pool: ProcessPoolExecutor) -> float:
    """Throughput with ``workers`` processes splitting the tiles (wall time of the slowest)."""
    chunks = [tiles[k::workers] for k in range(workers)]
    start = time.perf_counter()
    list(pool.map(_run, [(chunk, group) for chunk in chunks]))
    return len(tiles) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=400, help="tiles per measurement")
    parser.add_argument("--tile-px", type=int, default=64, help="tile side (NEU images are 200 px)")
    args = parser.parse_args(argv)
    tiles = load_tiles(args.tiles, args.tile_px)
    print(f"{len(tiles)} tiles of {args.tile_px} px from NEU-DET; {os.cpu_count()} CPUs visible\n")
    print("| group | columns | tiles/s, 1 core | tiles/s, 2 cores |")
    print("| --- | ---: | ---: | ---: |")
    settings = FeatureSettings()
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_run, [(tiles[:4], "all")] * 2))  # start both workers and import everything
        for group in (*GROUPS, "all"):
            one = tiles_per_s(tiles, group, 1, pool)
            two = tiles_per_s(tiles, group, 2, pool)
            columns = settings.length if group == "all" else settings.group_length(group)  # type: ignore[arg-type]
            print(f"| {group} | {columns} | {one:,.0f} | {two:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
