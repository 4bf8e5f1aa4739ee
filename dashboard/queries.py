"""Every SQL statement the dashboard runs, in one place, for SQLite and PostgreSQL.

Aggregation happens in the database (``GROUP BY``, date buckets computed from epoch seconds, which both
backends can do), so a page reads a few hundred rows however many defects are stored. Listings are paged
with ``LIMIT``. Functions take an ``Engine`` or a ``Connection`` and a :class:`~dashboard.filters.Filters`
and return small pandas frames (column names documented per function) or frozen dataclasses.

Filters select defects by ``defects.created_at`` and frames by ``frames.processed_at``; the daemon writes
the same instant to both, so frame and defect counts over a time range agree. Only frames with status
``ok`` count as inspected; ``failed`` and ``dropped`` frames are counted apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    inspect,
    or_,
    select,
    text,
)

from dashboard.filters import FilterOptions, Filters
from inspection.storage.schema import Coil, Defect, Frame, Gap, Line, ModelVersion, RetrainRun, Review

Bind = Engine | Connection

BUCKET_SECONDS: dict[str, int] = {"hour": 3600, "shift": 8 * 3600, "day": 86400}
"""Trend bucket sizes. Shifts are 8 h long, aligned on ``shift_start_hour`` (UTC); days on UTC midnight."""

REQUIRED_TABLES = ("lines", "coils", "frames", "defects", "model_versions", "reviews", "retrain_runs")

SORTS: dict[str, tuple[str, ...]] = {
    "newest": ("created_at desc", "id desc"),
    "oldest": ("created_at asc", "id asc"),
    "score_desc": ("score desc", "id desc"),
    "score_asc": ("score asc", "id asc"),
    "position": ("coil_id asc", "position_m asc", "id asc"),
}
"""Orders of the defect listings (gallery, review); each ends with the id so pages never overlap."""

REVIEW_STATES = ("all", "unreviewed", "reviewed")


@contextmanager
def _connect(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def _frame(conn: Connection, stmt: Any, columns: Sequence[str]) -> pd.DataFrame:
    rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def _aware(value: Any) -> datetime | None:
    """A datetime from a raw row value (``func.min`` returns text on SQLite, aware UTC on PostgreSQL)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------- filters -> WHERE


def _window_terms(
    f: Filters, *, at: Any, line_id: Any, coil_id: Any | None, model_version_id: Any
) -> list[ColumnElement[bool]]:
    """The filter terms defects and frames share: time window, lines, coils, model versions."""
    terms: list[ColumnElement[bool]] = []
    if f.start is not None:
        terms.append(at >= f.start)
    if f.end is not None:
        terms.append(at < f.end)
    if f.line_ids:
        terms.append(line_id.in_(f.line_ids))
    if f.coil_ids and coil_id is not None:
        terms.append(coil_id.in_(f.coil_ids))
    if f.model_version_ids:
        terms.append(model_version_id.in_(f.model_version_ids))
    return terms


def defect_conditions(f: Filters, *, with_coils: bool = True) -> list[ColumnElement[bool]]:
    """``WHERE`` terms selecting the defects of ``f`` (``with_coils=False`` ignores its coil filter)."""
    terms = _window_terms(
        f,
        at=Defect.created_at,
        line_id=Defect.line_id,
        coil_id=Defect.coil_id if with_coils else None,
        model_version_id=Defect.model_version_id,
    )
    if f.classes:
        terms.append(Defect.class_name.in_(f.classes))
    if f.min_score > 0:
        terms.append(Defect.score >= f.min_score)
    return terms


def frame_conditions(f: Filters) -> list[ColumnElement[bool]]:
    """``WHERE`` terms selecting the frames of ``f`` (class and score do not apply to frames)."""
    return _window_terms(
        f,
        at=Frame.processed_at,
        line_id=Frame.line_id,
        coil_id=Frame.coil_id,
        model_version_id=Frame.model_version_id,
    )


def _epoch_s(column: Any, dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 (UTC) of a ``UTCDateTime`` column."""
    if dialect == "sqlite":
        return cast(func.strftime("%s", column), BigInteger)
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", column)), BigInteger)
    raise NotImplementedError(f"the dashboard supports SQLite and PostgreSQL, not {dialect}")


def _floor_div(value: Any, size: float, dialect: str) -> ColumnElement[int]:
    """``floor(value / size)`` as an integer (SQLite's CAST truncates, so only for values >= 0 there)."""
    if dialect == "sqlite":
        return cast(value / size, Integer)
    return cast(func.floor(value / size), BigInteger)


def _bucket_index(column: Any, dialect: str, size_s: int, offset_s: int) -> ColumnElement[int]:
    return (_epoch_s(column, dialect) - offset_s) // size_s


def bucket_start(index: int, size_s: int, offset_s: int) -> datetime:
    """The UTC start of bucket ``index`` (the inverse of the SQL bucket expression)."""
    return datetime.fromtimestamp(int(index) * size_s + offset_s, UTC)


def bucket_params(bucket: str, *, shift_start_hour: int = 6) -> tuple[int, int]:
    """``(size_s, offset_s)`` of a bucket name; shifts start at ``shift_start_hour`` UTC."""
    if bucket not in BUCKET_SECONDS:
        raise ValueError(f"unknown bucket {bucket!r}; expected one of {list(BUCKET_SECONDS)}")
    return BUCKET_SECONDS[bucket], (shift_start_hour % 8) * 3600 if bucket == "shift" else 0


# ---------------------------------------------------------------- schema and filter options


def schema_problem(bind: Bind) -> str | None:
    """Why the database cannot be shown (tables missing), or None when it can."""
    with _connect(bind) as conn:
        names = set(inspect(conn).get_table_names())
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        return f"the database has no {', '.join(missing)} table(s): it was never set up by `steel inspect`"
    return None


# The distinct classes by a loose index scan: one index probe per class instead of reading every defect
# (``SELECT DISTINCT`` reads the whole class index on both backends). Standard SQL, both backends.
_DISTINCT_CLASSES = text(
    """
    WITH RECURSIVE c(name) AS (
        SELECT MIN(class_name) FROM defects
        UNION ALL
        SELECT (SELECT MIN(class_name) FROM defects WHERE class_name > c.name) FROM c WHERE c.name IS NOT NULL
    )
    SELECT name FROM c WHERE name IS NOT NULL
    """
)


def filter_options(bind: Bind, *, max_coils: int = 2000) -> FilterOptions:
    """Lines, the latest ``max_coils`` coils, known classes, model versions and the stored time span."""
    with _connect(bind) as conn:
        lines = tuple(
            (int(i), str(n)) for i, n in conn.execute(select(Line.id, Line.name).order_by(Line.name))
        )
        coil_rows = conn.execute(
            select(Coil.id, Coil.line_id, Line.name, Coil.code)
            .join(Line, Line.id == Coil.line_id)
            .order_by(Coil.id.desc())
            .limit(max_coils)
        ).all()
        coils = tuple((int(c), int(lid), f"{ln} / {code}") for c, lid, ln, code in coil_rows)
        versions = conn.execute(
            select(
                ModelVersion.id, ModelVersion.version, ModelVersion.is_active, ModelVersion.class_names
            ).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
        ).all()
        classes = set(conn.scalars(_DISTINCT_CLASSES))
        for *_, names in versions:
            classes.update(str(n) for n in names or [])
        # one aggregate per statement: SQLite answers a lone MIN or MAX from the index, not a pair
        firsts = [_aware(conn.scalar(select(func.min(c)))) for c in (Defect.created_at, Frame.processed_at)]
        lasts = [_aware(conn.scalar(select(func.max(c)))) for c in (Defect.created_at, Frame.processed_at)]
    firsts = [t for t in firsts if t is not None]
    lasts = [t for t in lasts if t is not None]
    return FilterOptions(
        lines=lines,
        coils=coils,
        classes=tuple(sorted(classes)),
        model_versions=tuple((int(i), str(v), bool(a)) for i, v, a, _ in versions),
        first_at=min(firsts) if firsts else None,
        last_at=max(lasts) if lasts else None,
    )


# ---------------------------------------------------------------- overview and pareto


@dataclass(frozen=True, slots=True)
class Totals:
    """Frames and metres inspected and defects found under one set of filters."""

    frames_ok: int
    frames_failed: int
    frames_dropped: int
    metres: float
    defects: int

    @property
    def per_1000_frames(self) -> float | None:
        return 1000.0 * self.defects / self.frames_ok if self.frames_ok else None

    @property
    def per_100_m(self) -> float | None:
        return 100.0 * self.defects / self.metres if self.metres > 0 else None


def totals(bind: Bind, f: Filters) -> Totals:
    """Frames by status, metres inspected (``SUM(length_m)`` of ok frames) and the defect count."""
    with _connect(bind) as conn:
        by_status = {
            str(status): (int(n), float(m or 0.0))
            for status, n, m in conn.execute(
                select(Frame.status, func.count(), func.sum(Frame.length_m))
                .where(*frame_conditions(f))
                .group_by(Frame.status)
            )
        }
        defects = int(conn.scalar(select(func.count()).select_from(Defect).where(*defect_conditions(f))) or 0)
    ok_frames, metres = by_status.get("ok", (0, 0.0))
    return Totals(
        frames_ok=ok_frames,
        frames_failed=by_status.get("failed", (0, 0.0))[0],
        frames_dropped=by_status.get("dropped", (0, 0.0))[0],
        metres=metres,
        defects=defects,
    )


def defects_by_class(bind: Bind, f: Filters) -> pd.DataFrame:
    """Columns ``class_name, defects``, most frequent class first (the Pareto order).

    Counts only, so the ``(class_name, created_at)`` index answers it without reading the defect rows.
    """
    n = func.count().label("defects")
    stmt = (
        select(Defect.class_name, n)
        .where(*defect_conditions(f))
        .group_by(Defect.class_name)
        .order_by(n.desc(), Defect.class_name)
    )
    with _connect(bind) as conn:
        df = _frame(conn, stmt, ["class_name", "defects"])
    return df.astype({"defects": "int64"})


def pareto(bind: Bind, f: Filters) -> pd.DataFrame:
    """Columns ``class_name, defects, share_pct, cumulative_pct`` in Pareto order."""
    df = defects_by_class(bind, f)
    total = int(df["defects"].sum())
    df["share_pct"] = 100.0 * df["defects"] / total if total else 0.0
    df["cumulative_pct"] = df["share_pct"].cumsum()
    return df


# ---------------------------------------------------------------- trends


def defect_trend(bind: Bind, f: Filters, *, bucket: str, shift_start_hour: int = 6) -> pd.DataFrame:
    """Defects per bucket and class: columns ``bucket_start, class_name, defects`` (empty buckets absent)."""
    size, offset = bucket_params(bucket, shift_start_hour=shift_start_hour)
    with _connect(bind) as conn:
        idx = _bucket_index(Defect.created_at, conn.dialect.name, size, offset).label("b")
        stmt = (
            select(idx, Defect.class_name, func.count())
            .where(*defect_conditions(f))
            .group_by(idx, Defect.class_name)
            .order_by(idx, Defect.class_name)
        )
        rows = conn.execute(stmt).all()
    return pd.DataFrame(
        [(bucket_start(b, size, offset), c, int(n)) for b, c, n in rows],
        columns=["bucket_start", "class_name", "defects"],
    )


def frame_trend(bind: Bind, f: Filters, *, bucket: str, shift_start_hour: int = 6) -> pd.DataFrame:
    """Inspected units per bucket: columns ``bucket_start, frames, metres, defects, frames_with_defects``.

    ``frames``/``metres`` count ok frames (the u-chart's units), ``defects`` the filtered defects and
    ``frames_with_defects`` the frames with at least one of them (the p-chart's nonconforming units).
    Buckets without inspected frames are absent: they are no sample.

    Without a class or score filter every defect of a frame counts, so the frames' own ``n_defects``
    answer in the same pass over the frames (the defects table, 2-3 times larger, is not read).
    """
    size, offset = bucket_params(bucket, shift_start_hour=shift_start_hour)
    with _connect(bind) as conn:
        fidx = _bucket_index(Frame.processed_at, conn.dialect.name, size, offset).label("b")
        with_defects = func.sum(case((Frame.n_defects > 0, 1), else_=0))
        frames = conn.execute(
            select(fidx, func.count(), func.sum(Frame.length_m), func.sum(Frame.n_defects), with_defects)
            .where(Frame.status == "ok", *frame_conditions(f))
            .group_by(fidx)
        ).all()
        if not f.classes and f.min_score <= 0:
            defects = {int(b): (int(nd or 0), int(nf or 0)) for b, _, _, nd, nf in frames}
        else:
            defects = _defects_per_bucket(conn, f, size, offset)
    rows = []
    for b, n, metres, *_ in sorted(frames, key=lambda r: int(r[0])):
        nd, nf = defects.get(int(b), (0, 0))
        rows.append((bucket_start(b, size, offset), int(n), float(metres or 0.0), nd, min(nf, int(n))))
    return pd.DataFrame(rows, columns=["bucket_start", "frames", "metres", "defects", "frames_with_defects"])


def _defects_per_bucket(conn: Connection, f: Filters, size: int, offset: int) -> dict[int, tuple[int, int]]:
    """Bucket index -> (defects, distinct frames with one) for the filtered defects."""
    idx = _bucket_index(Defect.created_at, conn.dialect.name, size, offset).label("b")
    return {
        int(b): (int(n), int(nf))
        for b, n, nf in conn.execute(
            select(idx, func.count(), func.count(Defect.frame_id.distinct()))
            .where(*defect_conditions(f))
            .group_by(idx)
        )
    }


# ---------------------------------------------------------------- defect listings (gallery, review)


def _review_condition(state: str) -> list[ColumnElement[bool]]:
    if state not in REVIEW_STATES:
        raise ValueError(f"unknown review state {state!r}; expected one of {REVIEW_STATES}")
    reviewed = exists().where(Review.defect_id == Defect.id)
    return [] if state == "all" else [~reviewed if state == "unreviewed" else reviewed]


def count_defects(bind: Bind, f: Filters, *, review_state: str = "all") -> int:
    """How many defects the filters (and the review state) select.

    Unreviewed = all - reviewed: reviews are few, so this never probes ``reviews`` once per defect.
    """
    _review_condition(review_state)  # validates the name
    with _connect(bind) as conn:
        total = 0
        if review_state != "reviewed":
            total = int(
                conn.scalar(select(func.count()).select_from(Defect).where(*defect_conditions(f))) or 0
            )
        if review_state == "all":
            return total
        reviewed_ids = select(Review.defect_id).distinct().subquery()
        reviewed = int(
            conn.scalar(
                select(func.count())
                .select_from(reviewed_ids)
                .join(Defect, Defect.id == reviewed_ids.c.defect_id)
                .where(*defect_conditions(f))
            )
            or 0
        )
    return reviewed if review_state == "reviewed" else total - reviewed


DEFECT_COLUMNS = [
    "id", "created_at", "line", "coil_id", "coil", "class_name", "score", "position_m", "cross_m", "length_m",
    "width_m", "x1", "y1", "x2", "y2", "crop_path", "frame_id", "frame_source", "frame_seq",
    "frame_image_path", "frame_width", "frame_height", "model_version", "track_id",
    "review_verdict", "review_new_class", "reviewer", "reviewed_at",
]  # fmt: skip


def _order_terms(sort: str, table: Any) -> list[Any]:
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; expected one of {list(SORTS)}")
    terms = []
    for item in SORTS[sort]:
        name, direction = item.split()
        col = table.c[name]
        terms.append((col.desc() if direction == "desc" else col.asc()).nulls_last())
    return terms


def _detail_stmt() -> Select[Any]:
    latest = (
        select(func.max(Review.id)).where(Review.defect_id == Defect.id).correlate(Defect).scalar_subquery()
    )
    return (
        select(
            Defect.id,
            Defect.created_at,
            Line.name,
            Defect.coil_id,
            Coil.code,
            Defect.class_name,
            Defect.score,
            Defect.position_m,
            Defect.cross_m,
            Defect.length_m,
            Defect.width_m,
            Defect.x1,
            Defect.y1,
            Defect.x2,
            Defect.y2,
            Defect.crop_path,
            Frame.id,
            Frame.source,
            Frame.seq,
            Frame.image_path,
            Frame.width,
            Frame.height,
            ModelVersion.version,
            Defect.track_id,
            Review.verdict,
            Review.new_class,
            Review.reviewer,
            Review.reviewed_at,
        )  # fmt: skip
        .join(Frame, Frame.id == Defect.frame_id)
        .outerjoin(Line, Line.id == Defect.line_id)
        .outerjoin(Coil, Coil.id == Defect.coil_id)
        .outerjoin(ModelVersion, ModelVersion.id == Defect.model_version_id)
        .outerjoin(Review, Review.id == latest)
    )


def list_defects(
    bind: Bind,
    f: Filters,
    *,
    sort: str = "newest",
    review_state: str = "all",
    limit: int = 24,
    offset: int = 0,
) -> pd.DataFrame:
    """One page of defects with their frame, line, coil, model and latest review (``DEFECT_COLUMNS``).

    The page's ids are chosen first (filters, order, ``LIMIT``/``OFFSET`` on the defects table alone), then
    only those rows are joined, so the cost does not grow with the joins on a million rows.
    """
    page = (
        select(Defect.id, Defect.created_at, Defect.score, Defect.coil_id, Defect.position_m)
        .where(*defect_conditions(f), *_review_condition(review_state))
        .subquery("page")
    )
    with _connect(bind) as conn:
        ids = [
            int(i)
            for i in conn.scalars(
                select(page.c.id).order_by(*_order_terms(sort, page)).limit(limit).offset(offset)
            )
        ]
        if not ids:
            return pd.DataFrame(columns=DEFECT_COLUMNS)
        df = _frame(conn, _detail_stmt().where(Defect.id.in_(ids)), DEFECT_COLUMNS)
    rank = {defect_id: k for k, defect_id in enumerate(ids)}
    return df.sort_values("id", key=lambda col: col.map(rank), ignore_index=True)


def defect_detail(bind: Bind, defect_id: int) -> dict[str, Any] | None:
    """One defect as a dict of ``DEFECT_COLUMNS``; None when it does not exist."""
    with _connect(bind) as conn:
        row = conn.execute(_detail_stmt().where(Defect.id == defect_id)).first()
    return None if row is None else dict(zip(DEFECT_COLUMNS, tuple(row), strict=True))


# ---------------------------------------------------------------- reviews


REVIEW_COLUMNS = [
    "review_id", "reviewed_at", "reviewer", "defect_id", "verdict", "old_class", "new_class", "note",
    "score", "line", "coil", "defect_created_at", "used_in_retrain_run_id",
]  # fmt: skip


def list_reviews(bind: Bind, f: Filters, *, limit: int = 1000, latest_only: bool = False) -> pd.DataFrame:
    """Reviews of the filtered defects, newest first (``REVIEW_COLUMNS``): who, when, what changed.

    The class filter applies to the class the model gave (``old_class``). ``latest_only`` keeps the latest
    review of each defect (the one that counts).
    """
    stmt = (
        select(
            Review.id,
            Review.reviewed_at,
            Review.reviewer,
            Review.defect_id,
            Review.verdict,
            Review.old_class,
            Review.new_class,
            Review.note,
            Defect.score,
            Line.name,
            Coil.code,
            Defect.created_at,
            Review.used_in_retrain_run_id,
        )  # fmt: skip
        .join(Defect, Defect.id == Review.defect_id)
        .outerjoin(Line, Line.id == Defect.line_id)
        .outerjoin(Coil, Coil.id == Defect.coil_id)
        .where(*defect_conditions(f))
        .order_by(Review.reviewed_at.desc(), Review.id.desc())
        .limit(limit)
    )
    if latest_only:
        latest = select(func.max(Review.id).label("rid")).group_by(Review.defect_id).subquery()
        stmt = stmt.join(latest, latest.c.rid == Review.id)
    with _connect(bind) as conn:
        return _frame(conn, stmt, REVIEW_COLUMNS)


EXPORT_COLUMNS = [
    "defect_id", "review_id", "verdict", "class_name", "new_class", "score", "x1", "y1", "x2", "y2",
    "crop_path", "frame_width", "frame_height", "frame_image_path", "frame_source", "frame_seq",
]  # fmt: skip


def reviewed_for_export(bind: Bind, f: Filters, *, limit: int = 100_000) -> pd.DataFrame:
    """The filtered defects that have a review, with the latest one (``EXPORT_COLUMNS``), by defect id."""
    latest = (
        select(Review.defect_id.label("defect_id"), func.max(Review.id).label("rid"))
        .group_by(Review.defect_id)
        .subquery()
    )
    stmt = (
        select(
            Defect.id,
            Review.id,
            Review.verdict,
            Defect.class_name,
            Review.new_class,
            Defect.score,
            Defect.x1,
            Defect.y1,
            Defect.x2,
            Defect.y2,
            Defect.crop_path,
            Frame.width,
            Frame.height,
            Frame.image_path,
            Frame.source,
            Frame.seq,
        )  # fmt: skip
        .select_from(latest)
        .join(Defect, Defect.id == latest.c.defect_id)
        .join(Review, Review.id == latest.c.rid)
        .join(Frame, Frame.id == Defect.frame_id)
        .where(*defect_conditions(f))
        .order_by(Defect.id)
        .limit(limit)
    )
    with _connect(bind) as conn:
        return _frame(conn, stmt, EXPORT_COLUMNS)


def latest_review_id(bind: Bind) -> int:
    """The id of the newest review (0 when there is none): it changes whenever a review is saved."""
    with _connect(bind) as conn:
        return int(conn.scalar(select(func.max(Review.id))) or 0)


def review_summary(bind: Bind, f: Filters) -> pd.DataFrame:
    """Latest verdict counts of the filtered defects: columns ``verdict, defects``."""
    latest = select(func.max(Review.id).label("rid")).group_by(Review.defect_id).subquery()
    stmt = (
        select(Review.verdict, func.count())
        .join(latest, latest.c.rid == Review.id)
        .join(Defect, Defect.id == Review.defect_id)
        .where(*defect_conditions(f))
        .group_by(Review.verdict)
        .order_by(Review.verdict)
    )
    with _connect(bind) as conn:
        return _frame(conn, stmt, ["verdict", "defects"])


# ---------------------------------------------------------------- coils


COIL_COLUMNS = [
    "coil_id",
    "line",
    "code",
    "started_at",
    "ended_at",
    "length_m",
    "frames",
    "metres",
    "defects",
]


def list_coils(bind: Bind, f: Filters, *, limit: int = 500) -> pd.DataFrame:
    """Coils with inspected frames under the filters, latest first (``COIL_COLUMNS``)."""
    frames = (
        select(
            Frame.coil_id.label("coil_id"),
            func.count().label("frames"),
            func.sum(Frame.length_m).label("metres"),
            func.max(Frame.processed_at).label("last_at"),
        )
        .where(Frame.coil_id.is_not(None), Frame.status == "ok", *frame_conditions(f))
        .group_by(Frame.coil_id)
        .subquery()
    )
    defects = (
        select(Defect.coil_id.label("coil_id"), func.count().label("defects"))
        .where(Defect.coil_id.is_not(None), *defect_conditions(f))
        .group_by(Defect.coil_id)
        .subquery()
    )
    stmt = (
        select(
            Coil.id,
            Line.name,
            Coil.code,
            Coil.started_at,
            Coil.ended_at,
            Coil.length_m,
            frames.c.frames,
            frames.c.metres,
            func.coalesce(defects.c.defects, 0),
        )  # fmt: skip
        .join(frames, frames.c.coil_id == Coil.id)
        .join(Line, Line.id == Coil.line_id)
        .outerjoin(defects, defects.c.coil_id == Coil.id)
        .order_by(frames.c.last_at.desc(), Coil.id.desc())
        .limit(limit)
    )
    with _connect(bind) as conn:
        return _frame(conn, stmt, COIL_COLUMNS)


COIL_DEFECT_COLUMNS = ["id", "class_name", "score", "position_m", "cross_m", "length_m", "width_m"]


def coil_defects(bind: Bind, f: Filters, coil_id: int, *, limit: int = 20_000) -> pd.DataFrame:
    """Defects of one coil with a known position, along the strip (``COIL_DEFECT_COLUMNS``)."""
    stmt = (
        select(
            Defect.id,
            Defect.class_name,
            Defect.score,
            Defect.position_m,
            Defect.cross_m,
            Defect.length_m,
            Defect.width_m,
        )  # fmt: skip
        .where(
            Defect.coil_id == coil_id,
            Defect.position_m.is_not(None),
            Defect.cross_m.is_not(None),
            *defect_conditions(f, with_coils=False),
        )
        .order_by(Defect.position_m, Defect.id)
        .limit(limit)
    )
    with _connect(bind) as conn:
        return _frame(conn, stmt, COIL_DEFECT_COLUMNS)


def count_coil_defects(bind: Bind, f: Filters, coil_id: int) -> tuple[int, int]:
    """``(with a position, without)``: defects of the coil that can and cannot be placed on the map."""
    placed = and_(Defect.position_m.is_not(None), Defect.cross_m.is_not(None))
    stmt = select(func.count(), func.sum(case((placed, 1), else_=0))).where(
        Defect.coil_id == coil_id, *defect_conditions(f, with_coils=False)
    )
    with _connect(bind) as conn:
        n, n_placed = conn.execute(stmt).one()
    return int(n_placed or 0), int(n or 0) - int(n_placed or 0)


def coil_density(
    bind: Bind, f: Filters, coil_id: int, *, along_bin_m: float, across_bin_m: float
) -> pd.DataFrame:
    """Defect counts on a grid of the coil: columns ``position_m, cross_m, class_name, defects``.

    ``position_m``/``cross_m`` are the lower edges of the bins; for coils with too many defects to plot
    one by one.
    """
    with _connect(bind) as conn:
        dialect = conn.dialect.name
        along = _floor_div(Defect.position_m, along_bin_m, dialect).label("a")
        across = _floor_div(Defect.cross_m, across_bin_m, dialect).label("c")
        rows = conn.execute(
            select(along, across, Defect.class_name, func.count())
            .where(
                Defect.coil_id == coil_id,
                Defect.position_m.is_not(None),
                Defect.cross_m.is_not(None),
                *defect_conditions(f, with_coils=False),
            )
            .group_by(along, across, Defect.class_name)
            .order_by(along, across, Defect.class_name)
        ).all()
    return pd.DataFrame(
        [(int(a) * along_bin_m, int(c) * across_bin_m, str(k), int(n)) for a, c, k, n in rows],
        columns=["position_m", "cross_m", "class_name", "defects"],
    )


# ---------------------------------------------------------------- models


MODEL_COLUMNS = [
    "id", "version", "name", "family", "is_active", "created_at", "activated_at", "promoted_by", "note",
    "path", "class_names", "metrics",
]  # fmt: skip


def list_model_versions(bind: Bind) -> pd.DataFrame:
    """The model registry, newest first (``MODEL_COLUMNS``; ``metrics`` a dict, ``class_names`` a list)."""
    stmt = select(
        ModelVersion.id, ModelVersion.version, ModelVersion.name, ModelVersion.family, ModelVersion.is_active,
        ModelVersion.created_at, ModelVersion.activated_at, ModelVersion.promoted_by, ModelVersion.note,
        ModelVersion.path, ModelVersion.class_names, ModelVersion.metrics,
    ).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())  # fmt: skip
    with _connect(bind) as conn:
        return _frame(conn, stmt, MODEL_COLUMNS)


def defects_by_model(bind: Bind, f: Filters) -> pd.DataFrame:
    """Columns ``model_version, frames, defects`` under the filters (``None``: frames without a model).

    Without a class or score filter the frames' ``n_defects`` give the defects in the same pass.
    """
    with _connect(bind) as conn:
        rows = conn.execute(
            select(Frame.model_version_id, func.count(), func.sum(Frame.n_defects))
            .where(Frame.status == "ok", *frame_conditions(f))
            .group_by(Frame.model_version_id)
        ).all()
        frames = {mid: int(n) for mid, n, _ in rows}
        if not f.classes and f.min_score <= 0:
            defects = {mid: int(nd or 0) for mid, _, nd in rows}
        else:
            defects = {
                mid: int(n)
                for mid, n in conn.execute(
                    select(Defect.model_version_id, func.count())
                    .where(*defect_conditions(f))
                    .group_by(Defect.model_version_id)
                )
            }
        names = dict(conn.execute(select(ModelVersion.id, ModelVersion.version)).all())
    out = [
        (names.get(mid) if mid is not None else None, frames.get(mid, 0), defects.get(mid, 0))
        for mid in sorted(set(frames) | set(defects), key=lambda m: (m is None, m or 0))
    ]
    return pd.DataFrame(out, columns=["model_version", "frames", "defects"])


RETRAIN_COLUMNS = [
    "id", "started_at", "finished_at", "status", "champion_version", "challenger_version",
    "decision_reason", "last_review_id", "summary",
]  # fmt: skip


def list_retrain_runs(bind: Bind, *, limit: int = 100) -> pd.DataFrame:
    """Retraining decisions, newest first (``RETRAIN_COLUMNS``; ``summary`` a dict)."""
    stmt = (
        select(
            RetrainRun.id,
            RetrainRun.started_at,
            RetrainRun.finished_at,
            RetrainRun.status,
            RetrainRun.champion_version,
            RetrainRun.challenger_version,
            RetrainRun.decision_reason,
            RetrainRun.last_review_id,
            RetrainRun.summary,
        )  # fmt: skip
        .order_by(RetrainRun.started_at.desc(), RetrainRun.id.desc())
        .limit(limit)
    )
    with _connect(bind) as conn:
        return _frame(conn, stmt, RETRAIN_COLUMNS)


# ---------------------------------------------------------------- live


LIVE_COLUMNS = [
    "line_id", "line", "frame_id", "source", "seq", "processed_at", "status", "n_defects", "image_path",
    "latency_ms", "last_frame_at",
]  # fmt: skip


def latest_frames(bind: Bind, *, line_ids: Sequence[int] = (), recent: int = 2000) -> pd.DataFrame:
    """Per line, the latest frame kept as an annotated image, and when the line's latest frame came.

    ``LIVE_COLUMNS``; ``frame_id`` and the frame columns are null for a line whose ``recent`` latest
    frames kept no image. Looking only that far back (on the ``(line_id, processed_at)`` index) bounds the
    cost when the daemon keeps images rarely; the page is about now, not last month.
    """
    columns = (
        Frame.id, Frame.source, Frame.seq, Frame.processed_at, Frame.status, Frame.n_defects,
        Frame.image_path, Frame.latency_ms,
    )  # fmt: skip
    rows = []
    with _connect(bind) as conn:
        lines = select(Line.id, Line.name).order_by(Line.name)
        if line_ids:
            lines = lines.where(Line.id.in_(line_ids))
        for line_id, name in conn.execute(lines).all():
            last_at = conn.scalar(select(func.max(Frame.processed_at)).where(Frame.line_id == line_id))
            window = (
                select(*columns)
                .where(Frame.line_id == line_id)
                .order_by(Frame.processed_at.desc(), Frame.id.desc())
                .limit(recent)
                .subquery()
            )
            kept = conn.execute(
                select(window)
                .where(window.c.image_path.is_not(None))
                .order_by(window.c.processed_at.desc(), window.c.id.desc())
                .limit(1)
            ).first()
            rows.append((line_id, name, *(tuple(kept) if kept else (None,) * len(columns)), _aware(last_at)))
    return pd.DataFrame(rows, columns=LIVE_COLUMNS)


FRAME_BOX_COLUMNS = ["id", "class_name", "score", "carried_over"]


def frame_boxes(bind: Bind, frame_id: int, *, lookback_frames: int = 200) -> pd.DataFrame:
    """The defects drawn on a frame's annotated image (``FRAME_BOX_COLUMNS``), new ones first.

    The daemon draws every detection of the frame, but stores a defect once, with the first frame that
    saw it; a later overlapping frame that sees it again only moves its ``last_frame_seq`` on. So the
    boxes on frame ``seq`` are the defects stored with it plus those of earlier frames of the same source
    whose ``last_frame_seq`` reaches ``seq`` (``carried_over``). Only the ``lookback_frames`` frames
    before it are searched (on the ``(source, seq)`` index): a track spans a few overlapping frames.
    """
    with _connect(bind) as conn:
        found = conn.execute(select(Frame.source, Frame.seq).where(Frame.id == frame_id)).first()
        if found is None:
            return pd.DataFrame(columns=FRAME_BOX_COLUMNS)
        source, seq = found
        earlier = select(Frame.id).where(
            Frame.source == source, Frame.seq < seq, Frame.seq >= seq - lookback_frames
        )
        carried = and_(Defect.frame_id.in_(earlier), Defect.last_frame_seq >= seq)
        stmt = (
            select(Defect.id, Defect.class_name, Defect.score, Defect.frame_id != frame_id)
            .where(or_(Defect.frame_id == frame_id, carried))
            .order_by(Defect.frame_id != frame_id, Defect.id)
        )
        df = _frame(conn, stmt, FRAME_BOX_COLUMNS)
    return df.astype({"carried_over": bool})


LIVE_STAT_COLUMNS = ["line_id", "frames", "failed", "dropped", "defects", "mean_latency_ms"]


def live_stats(bind: Bind, *, since: datetime, line_ids: Sequence[int] = ()) -> pd.DataFrame:
    """Per line, frames by status, defects and mean latency since ``since`` (``LIVE_STAT_COLUMNS``)."""
    f = Filters(start=since, line_ids=tuple(line_ids))
    stmt = (
        select(
            Frame.line_id,
            func.sum(case((Frame.status == "ok", 1), else_=0)),
            func.sum(case((Frame.status == "failed", 1), else_=0)),
            func.sum(case((Frame.status == "dropped", 1), else_=0)),
            func.sum(Frame.n_defects),
            func.avg(Frame.latency_ms),
        )
        .where(*frame_conditions(f))
        .group_by(Frame.line_id)
    )
    with _connect(bind) as conn:
        df = _frame(conn, stmt, LIVE_STAT_COLUMNS)
    for col in ("frames", "failed", "dropped", "defects"):
        df[col] = df[col].fillna(0).astype("int64")
    return df


GAP_COLUMNS = ["source", "line", "started_at", "ended_at", "seconds", "reason", "missing_lines"]


def recent_gaps(
    bind: Bind, *, since: datetime, line_ids: Sequence[int] = (), limit: int = 200
) -> pd.DataFrame:
    """Input gaps (camera disconnects, encoder jumps) that ended after ``since``, newest first."""
    stmt = (
        select(Gap.source, Line.name, Gap.started_at, Gap.ended_at, Gap.reason, Gap.missing_lines)
        .outerjoin(Line, Line.id == Gap.line_id)
        .where(Gap.ended_at >= since)
        .order_by(Gap.started_at.desc(), Gap.id.desc())
        .limit(limit)
    )
    if line_ids:
        stmt = stmt.where(Gap.line_id.in_(line_ids))
    with _connect(bind) as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame(
        [(s, ln, a, b, (b - a).total_seconds(), r, m) for s, ln, a, b, r, m in rows], columns=GAP_COLUMNS
    )
