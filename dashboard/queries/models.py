"""The model registry, defects per model version and the retraining decisions (Models page)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import (
    func,
    select,
)

from dashboard.filters import Filters
from dashboard.queries.base import (
    Bind,
    connect,
    defect_conditions,
    frame_conditions,
    to_frame,
)
from inspection.storage.schema import Defect, Frame, ModelActivation, ModelVersion, RetrainRun

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
    with connect(bind) as conn:
        return to_frame(conn, stmt, MODEL_COLUMNS)


def defects_by_model(bind: Bind, f: Filters) -> pd.DataFrame:
    """Columns ``model_version, frames, defects`` under the filters (``None``: frames without a model).

    Without a class or score filter the frames' ``n_defects`` give the defects in the same pass.
    """
    with connect(bind) as conn:
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
    with connect(bind) as conn:
        return to_frame(conn, stmt, RETRAIN_COLUMNS)


ACTIVATION_COLUMNS = ["activated_at", "version", "previous_version", "kind", "actor", "reason", "forced"]


def list_activations(bind: Bind, *, limit: int = 200) -> pd.DataFrame:
    """The activation history, newest first (``ACTIVATION_COLUMNS``): every promotion, rollback and override,
    with who did it, why and whether a gate rejection was overridden (``forced``)."""
    stmt = (
        select(
            ModelActivation.activated_at,
            ModelActivation.version,
            ModelActivation.previous_version,
            ModelActivation.kind,
            ModelActivation.actor,
            ModelActivation.reason,
            ModelActivation.forced,
        )  # fmt: skip
        .order_by(ModelActivation.activated_at.desc(), ModelActivation.id.desc())
        .limit(limit)
    )
    with connect(bind) as conn:
        return to_frame(conn, stmt, ACTIVATION_COLUMNS)
