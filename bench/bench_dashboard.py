"""Dashboard benchmark: a 1,000,000-defect SQLite database, the time of each page's queries and page runs.

Not a test (no thresholds): it prints figures for the README. The database is built with bulk
``executemany`` inserts into a migrated schema (about a minute on a busy laptop) and kept for reruns::

    python bench/bench_dashboard.py                     # build var/bench/dashboard-1m.db if missing, time it
    python bench/bench_dashboard.py --defects 200000 --rebuild
    python bench/bench_dashboard.py --db postgresql+psycopg://...   # time an existing database only

Each query is timed cold (no Streamlit cache) under the dashboard's default filters (last 7 days) and
with no filter at all (all 30 days); each page is run through ``AppTest`` with empty caches, as the
first visitor of the day would see it.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dashboard import queries  # noqa: E402
from dashboard.filters import Filters, time_range  # noqa: E402
from datasets.model import NEU_DET_CLASSES  # noqa: E402
from inspection.storage.db import default_sqlite_url, make_engine, upgrade  # noqa: E402

CLASS_WEIGHTS = (30, 20, 15, 10, 15, 10)
LINES = ("hot-strip-1", "hot-strip-2", "pickling-1", "cold-mill-1")
DAYS = 30
FRAMES_PER_COIL = 2500
FRAME_LENGTH_M = 0.9
TS = "%Y-%m-%d %H:%M:%S.%f"
CHUNK = 100_000
MEAN_DEFECTS_PER_FRAME = 2.47  # E[min(12, floor(Exp(mean 3)))] on the 99.8 % of frames that are ok


def build(path: Path, *, n_defects: int, seed: int = 0) -> None:
    """A migrated SQLite database with exactly ``n_defects`` defects on ~0.4 frame per defect, 30 days."""
    _fresh_database(path)
    rng = random.Random(seed)
    n_frames = max(1, round(n_defects / MEAN_DEFECTS_PER_FRAME))  # an estimate: frames are added until
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)  # the count is reached
    start = end - timedelta(days=DAYS)
    step_s = DAYS * 86400 / n_frames
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("BEGIN")
    _insert_lines_and_models(con, created=start.strftime(TS))
    frames: list[tuple] = []
    defects: list[tuple] = []
    coils: list[tuple] = []
    frame_id = defect_id = 0
    seq = dict.fromkeys(LINES, 0)
    weights = list(CLASS_WEIGHTS)
    k = -1
    while defect_id < n_defects:
        k += 1
        line_idx = k % len(LINES)
        line = LINES[line_idx]
        s = seq[line]
        seq[line] += 1
        coil_no = s // FRAMES_PER_COIL
        coil_id = line_idx * 100_000 + coil_no + 1
        at = start + timedelta(seconds=k * step_s)
        if s % FRAMES_PER_COIL == 0:
            coils.append((coil_id, line_idx + 1, f"{line}-{coil_no:05d}", at.strftime(TS), at.strftime(TS)))
        frame_id += 1
        ts = at.strftime(TS)
        model_id = 1 + min(2, int(3 * k / n_frames))
        status = "ok" if rng.random() > 0.002 else rng.choice(("failed", "dropped"))
        n = 0
        if status == "ok":
            n = min(12, int(rng.expovariate(1 / 3.0)), n_defects - defect_id)
            pos0 = (s % FRAMES_PER_COIL) * FRAME_LENGTH_M
            for cls in rng.choices(NEU_DET_CLASSES, weights=weights, k=n):
                defect_id += 1
                x1, y1 = rng.uniform(0, 3800), rng.uniform(0, 1900)
                w, h = rng.uniform(10, 200), rng.uniform(10, 200)
                defects.append(
                    (defect_id, frame_id, line_idx + 1, coil_id, cls, round(rng.uniform(0.25, 1.0), 4),
                     x1, y1, x1 + w, y1 + h, round(pos0 + y1 * 0.0005, 4), round(x1 * 0.0005, 4),
                     round(h * 0.0005, 4), round(w * 0.0005, 4), f"{line}:{defect_id}", s, s, model_id,
                     f"crops/{frame_id}-{defect_id}.png", ts)
                )  # fmt: skip
        frames.append(
            (frame_id, f"line:{line}", s, line_idx + 1, coil_id, ts, ts, status, 4096, 2000, s * 1800,
             (s % FRAMES_PER_COIL) * FRAME_LENGTH_M, FRAME_LENGTH_M, model_id, rng.uniform(20, 60), n)
        )  # fmt: skip
        if len(defects) >= CHUNK or defect_id >= n_defects:  # bounded memory: insert in chunks
            _insert(con, coils, frames, defects)
            coils, frames, defects = [], [], []
    _insert_reviews(con, rng, n_defects=defect_id)
    con.execute("COMMIT")
    con.close()
    print(f"built {path}: {frame_id:,} frames, {defect_id:,} defects", flush=True)


def _fresh_database(path: Path) -> None:
    """An empty, migrated SQLite file at ``path`` (an earlier build and its WAL files removed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    upgrade(default_sqlite_url(path))


def _insert_lines_and_models(con: sqlite3.Connection, *, created: str) -> None:
    """The production lines and three model versions (the last one active)."""
    con.executemany(
        "INSERT INTO lines (id, name, mm_per_line, created_at) VALUES (?, ?, 0.5, ?)",
        [(i + 1, name, created) for i, name in enumerate(LINES)],
    )
    versions = [("2025.1", False), ("2025.2", False), ("2025.3", True)]
    con.executemany(
        "INSERT INTO model_versions (id, version, name, family, class_names, metrics, manifest, created_at, "
        "is_active) VALUES (?, ?, 'neu-yolo-n', 'yolo', ?, ?, ?, ?, ?)",
        [
            (i + 1, v, '["' + '","'.join(NEU_DET_CLASSES) + '"]', f'{{"map50": {0.7 + 0.02 * i}}}',
             f'{{"version": "{v}"}}', created, active)
            for i, (v, active) in enumerate(versions)
        ],
    )  # fmt: skip


def _insert_reviews(con: sqlite3.Connection, rng: random.Random, *, n_defects: int) -> None:
    """Up to 2,000 reviews of random defects (confirmed, rejected or relabelled as scratches)."""
    reviewed = rng.sample(range(1, n_defects + 1), min(2000, n_defects))
    con.executemany(
        "INSERT INTO reviews (defect_id, reviewer, reviewed_at, verdict, old_class, new_class) "
        "SELECT id, 'bench', created_at, ?, class_name, ? FROM defects WHERE id = ?",
        [
            (v, "scratches" if v == "relabelled" else None, d)
            for d in reviewed
            for v in [rng.choice(("confirmed", "rejected", "relabelled"))]
        ],
    )
    con.execute("DELETE FROM reviews WHERE verdict = 'relabelled' AND old_class = new_class")


def _insert(con: sqlite3.Connection, coils: list[tuple], frames: list[tuple], defects: list[tuple]) -> None:
    con.executemany(
        "INSERT INTO coils (id, line_id, code, started_at, created_at) VALUES (?, ?, ?, ?, ?)", coils
    )
    con.executemany(
        "INSERT INTO frames (id, source, seq, line_id, coil_id, captured_at, processed_at, status, width, "
        "height, start_line, position_m, length_m, model_version_id, latency_ms, n_defects) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        frames,
    )
    con.executemany(
        "INSERT INTO defects (id, frame_id, line_id, coil_id, class_name, score, x1, y1, x2, y2, position_m, "
        "cross_m, length_m, width_m, track_id, first_frame_seq, last_frame_seq, model_version_id, crop_path, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        defects,
    )


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median seconds of ``repeat`` cold calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_queries(url: str) -> None:
    engine = make_engine(url, read_only=True)
    options = queries.filter_options(engine)
    coils = queries.list_coils(engine, Filters())
    coil = int(coils.iloc[0]["coil_id"])
    start, end = time_range("Last 7 days", now=datetime.now(UTC))
    cases = {"last 7 days": Filters(start=start, end=end), "all time": Filters()}
    calls: dict[str, Callable[[Filters], object]] = {
        "filter_options": lambda f: queries.filter_options(engine),
        "totals": lambda f: queries.totals(engine, f),
        "defects_by_class": lambda f: queries.defects_by_class(engine, f),
        "frame_trend (hour)": lambda f: queries.frame_trend(engine, f, bucket="hour"),
        "defect_trend (hour)": lambda f: queries.defect_trend(engine, f, bucket="hour"),
        "frame_trend (shift)": lambda f: queries.frame_trend(engine, f, bucket="shift"),
        "list_coils": lambda f: queries.list_coils(engine, f),
        "coil_defects": lambda f: queries.coil_defects(engine, f, coil),
        "count_defects": lambda f: queries.count_defects(engine, f),
        "list_defects (score)": lambda f: queries.list_defects(engine, f, sort="score_desc"),
        "list_defects (unreviewed)": lambda f: queries.list_defects(engine, f, review_state="unreviewed"),
        "list_reviews": lambda f: queries.list_reviews(engine, f),
        "review_summary": lambda f: queries.review_summary(engine, f),
        "defects_by_model": lambda f: queries.defects_by_model(engine, f),
        "latest_frames": lambda f: queries.latest_frames(engine),
    }
    print(f"\nqueries ({len(options.classes)} classes, coil {coil}); median of 3 cold calls, seconds")
    print(f"{'query':<28}" + "".join(f"{name:>14}" for name in cases))
    for name, call in calls.items():
        print(f"{name:<28}" + "".join(f"{timed(functools.partial(call, f)):>14.3f}" for f in cases.values()))
    engine.dispose()


def bench_pages(url: str) -> None:
    # Streamlit takes seconds to import: only the page timings (not --skip-pages) need it
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["STEEL_DASHBOARD_DB"] = url
    os.environ.pop("STEEL_DASHBOARD_CONFIG", None)
    app = str(REPO / "dashboard" / "app.py")
    AppTest.from_file(app, default_timeout=120).run()  # imports and the engine, once
    print("\npages (AppTest, caches emptied before each run), seconds")
    print(f"{'page':<12}{'last 7 days':>14}{'all time':>14}")
    runs: list[tuple[str, str, dict[str, str]]] = [
        (p, p, {})
        for p in ("overview", "trends", "pareto", "coil_map", "gallery", "review", "models", "live")
    ]
    runs.insert(2, ("trends/hour", "trends", {"trend_bucket": "hour"}))  # default: by the range's length
    for label, page, settings in runs:
        row = []
        for preset in ("Last 7 days", "All time"):
            at = AppTest.from_file(app, default_timeout=120)
            at.run()
            at.selectbox(key="flt_time").set_value(preset)
            if page != "overview":
                at.switch_page(f"views/{page}.py")
                at.run()
            for key, value in settings.items():
                at.selectbox(key=key).set_value(value)
            st.cache_data.clear()
            t = time.perf_counter()
            at.run()
            row.append(time.perf_counter() - t)
            if at.exception:
                raise RuntimeError(f"{page}: {at.exception[0].value}")
        print(f"{label:<12}" + "".join(f"{v:>14.3f}" for v in row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--defects", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "dashboard-1m.db")
    parser.add_argument("--rebuild", action="store_true", help="build the database even if it exists")
    parser.add_argument("--db", help="time this existing database (any URL) instead of building one")
    parser.add_argument("--skip-pages", action="store_true")
    args = parser.parse_args()
    if args.db:
        url = args.db
    else:
        if args.rebuild or not args.out.is_file():
            t = time.perf_counter()
            build(args.out, n_defects=args.defects)
            print(f"build: {time.perf_counter() - t:.1f} s")
        url = default_sqlite_url(args.out)
    engine = make_engine(url, read_only=True)
    total = queries.totals(engine, Filters())
    engine.dispose()
    print(f"database: {url}\n{total.defects:,} defects, {total.frames_ok:,} ok frames, {total.metres:,.0f} m")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, sqlite {sqlite3.sqlite_version}")
    bench_queries(url)
    if not args.skip_pages:
        bench_pages(url)


if __name__ == "__main__":
    main()
