"""The figures a coil or shift report shows, read through :mod:`dashboard.queries` when it is asked for.

Reports are made on the click of their download button (not on every page run), straight from the
database: a report must hold what is stored now, not a cached aggregate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import pandas as pd
from sqlalchemy import Engine

from dashboard import queries
from dashboard.data import PageContext, media_path, query_engine
from dashboard.filters import Filters
from dashboard.images import defect_picture
from dashboard.localtime import fmt_time
from dashboard.reports import CoilPart, CropPart, png_b64, render_report
from dashboard.surfaces import by_surface
from dashboard.svgmap import coil_map_svg
from dashboard.ui import fmt_float

CROP_PX = 160
MAX_COILS = 5000
MAX_SECTIONS = 24  # coils drawn in a shift report (a shift rarely touches more)


def side_names(ctx: PageContext) -> tuple[str, str]:
    """(the strip edge at ``cross_m = 0``, the other edge), from ``cross_zero_side``."""
    zero = ctx.config.cross_zero_side
    return f"{zero} side", "drive side" if zero == "operator" else "operator side"


def coil_part(ctx: PageContext, engine: Engine, coil: dict) -> CoilPart:
    """One coil's section: its times, length, grade and map (every placed defect of the coil)."""
    coil_id = int(coil["coil_id"])
    points = queries.coil_defects(engine, Filters(), coil_id, limit=ctx.config.coil_map_max_points)
    recorded = coil.get("length_m")
    length = float(recorded) if recorded is not None and pd.notna(recorded) else None
    reach = float((points["position_m"]).max()) if not points.empty else 0.0
    width = ctx.config.strip_width_of(str(coil["line"]))
    across = float((points["cross_m"] + points["width_m"].fillna(0)).max()) if not points.empty else 1.0
    zero, far = side_names(ctx)
    svg = "\n".join(  # one map per strip surface the frames name (else the line's from the settings)
        coil_map_svg(
            part,
            length_m=max(length or float(coil.get("metres") or 0.0), reach, 1.0),
            width_m=width or max(across, 0.1),
            zero_side=zero,
            far_side=far,
            surface=surface,
        )
        for surface, part in by_surface(points, ctx.config.line_surface.get(str(coil["line"])))
    )
    grade = coil.get("grade")
    grade_text = grade if isinstance(grade, str) and grade else None
    return CoilPart(
        line=str(coil["line"]),
        code=str(coil["code"]),
        started=fmt_time(coil.get("started_at"), ctx.tz) or "start unknown",
        ended=fmt_time(coil.get("ended_at"), ctx.tz) or "still open",
        length=fmt_float(length, 1, " m") if length is not None else "not known yet (coil open)",
        metres=fmt_float(float(coil.get("metres") or 0.0), 1, " m"),
        defects=int(coil.get("defects") or 0),
        grade=grade_text or "not graded",
        graded=grade_text is not None,
        reasons=tuple(coil.get("grade_reasons") or ()),
        map_svg=svg,
    )


def crop_parts(ctx: PageContext, engine: Engine, f: Filters) -> list[CropPart]:
    """The crops of the most certain defects under ``f`` (those with an image on disk)."""
    rows = queries.list_defects(engine, f, sort="score_desc", limit=ctx.config.report_crops)
    parts = []
    for row in rows.to_dict("records"):
        image = defect_picture(row, partial(media_path, ctx), size=CROP_PX)
        if image is None:
            continue
        where = f"{row['line'] or '-'} / {row['coil'] or '-'}"
        if row["position_m"] is not None and pd.notna(row["position_m"]):
            where += f" at {float(row['position_m']):,.1f} m"
        parts.append(
            CropPart(
                defect_id=int(row["id"]),
                class_name=str(row["class_name"]),
                score=f"{float(row['score']):.2f}",
                where=where,
                png_b64=png_b64(image),
            )
        )
    return parts


def coil_report(ctx: PageContext, coil_id: int) -> str:
    """The report of one coil: all its defects, whatever the page's filters."""
    engine = query_engine(ctx.config)
    f = Filters(coil_ids=(coil_id,))
    coils = queries.list_coils(engine, f)
    if coils.empty:
        raise LookupError(f"coil {coil_id} has no inspected frame")
    coil = coils.iloc[0].to_dict()
    return render_report(
        title=f"Coil report {coil['line']} / {coil['code']}",
        subtitle="Every defect of the coil, whatever the dashboard's filters.",
        figures=[],
        coils=[coil_part(ctx, engine, coil)],
        pareto=queries.pareto(engine, f),
        crops=crop_parts(ctx, engine, f),
        generated_at=datetime.now(UTC),
        tz=ctx.tz,
    )


def shift_report(ctx: PageContext, start: datetime, end: datetime) -> str:
    """The report of one shift ``[start, end)`` under the page's line, class and model filters."""
    engine = query_engine(ctx.config)
    f = ctx.filters.with_(start=start, end=end, coil_ids=())
    totals = queries.totals(engine, f)
    coils = queries.list_coils(engine, f, limit=MAX_COILS)
    figures = [
        ("Frames inspected", f"{totals.frames_ok:,}"),
        ("Metres inspected", fmt_float(totals.metres, 1, " m")),
        ("Coils", f"{len(coils):,}"),
        ("Defects", f"{totals.defects:,}"),
        ("Defects per 100 m", fmt_float(totals.per_100_m)),
    ]
    window = f"{fmt_time(start, ctx.tz)} to {fmt_time(end, ctx.tz)}"
    return render_report(
        title=f"Shift report {fmt_time(start, ctx.tz)}",
        subtitle=f"Shift from {window}; coils shown whole, with their grade.",
        figures=figures,
        coils=[coil_part(ctx, engine, c) for c in coils.head(MAX_SECTIONS).to_dict("records")],
        pareto=queries.pareto(engine, f),
        crops=crop_parts(ctx, engine, f),
        generated_at=datetime.now(UTC),
        tz=ctx.tz,
    )
