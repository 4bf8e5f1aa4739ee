"""Whether the database can be shown, and what the sidebar filters can offer."""

from __future__ import annotations

from sqlalchemy import (
    func,
    inspect,
    select,
    text,
)

from dashboard.filters import FilterOptions
from dashboard.queries.base import (
    Bind,
    aware,
    connect,
)
from inspection.storage.schema import Coil, Defect, Frame, Line, ModelVersion

REQUIRED_TABLES = (
    "lines", "coils", "frames", "defects", "model_versions", "reviews", "retrain_runs", "coil_grades",
)  # fmt: skip


def schema_problem(bind: Bind) -> str | None:
    """Why the database cannot be shown (tables missing), or None when it can."""
    with connect(bind) as conn:
        names = set(inspect(conn).get_table_names())
    missing = [t for t in REQUIRED_TABLES if t not in names]
    if missing:
        if "lines" in missing:
            return (
                f"the database has no {', '.join(missing)} table(s): it was never set up by `steel inspect`"
            )
        return (
            f"the database has no {', '.join(missing)} table(s): its schema is older than this dashboard; "
            "`steel inspect` (or `alembic upgrade head`) brings it up to date"
        )
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
    with connect(bind) as conn:
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
        first_of = [aware(conn.scalar(select(func.min(c)))) for c in (Defect.created_at, Frame.processed_at)]
        last_of = [aware(conn.scalar(select(func.max(c)))) for c in (Defect.created_at, Frame.processed_at)]
    firsts = [t for t in first_of if t is not None]
    lasts = [t for t in last_of if t is not None]
    return FilterOptions(
        lines=lines,
        coils=coils,
        classes=tuple(sorted(classes)),
        model_versions=tuple((int(i), str(v), bool(a)) for i, v, a, _ in versions),
        first_at=min(firsts) if firsts else None,
        last_at=max(lasts) if lasts else None,
    )
