"""Models: the registered model versions with their metrics, which one is active, retraining decisions."""

from __future__ import annotations

import json
from datetime import UTC, tzinfo

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.data import PageContext, context, q
from dashboard.localtime import fmt_time, local_columns
from dashboard.ui import csv_button, empty_state, table_columns

TITLE = "Models"
MODEL_NAMES = {
    "id": "Id", "version": "Version", "name": "Name", "family": "Family", "is_active": "Active",
    "created_at": "Registered at", "activated_at": "Activated at", "promoted_by": "Promoted by",
    "note": "Note", "path": "Bundle", "class_names": "Classes",
}  # fmt: skip
ACTIVATION_NAMES = {
    "activated_at": "Activated at", "version": "Version", "previous_version": "Replaced",
    "kind": "How", "actor": "By", "reason": "Why", "forced": "Gate overridden",
}  # fmt: skip
RUN_NAMES = {
    "id": "Run", "started_at": "Started at", "finished_at": "Finished at", "status": "Outcome",
    "champion_version": "Champion", "challenger_version": "Challenger", "decision_reason": "Why",
    "last_review_id": "Reviews up to", "summary": "Summary",
}  # fmt: skip


def _flat(prefix: str, value: object, out: dict[str, object]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    elif isinstance(value, int | float | str | bool) or value is None:
        out[prefix] = value


def flatten_metrics(models: pd.DataFrame) -> pd.DataFrame:
    """The registry with each scalar metric as a ``metric.<name>`` column (nested dicts dotted)."""
    rows = []
    for record in models.to_dict("records"):
        flat: dict[str, object] = {}
        _flat("metric", record.pop("metrics") or {}, flat)
        record["class_names"] = ", ".join(record["class_names"] or [])
        rows.append({**record, **flat})
    return pd.DataFrame(rows)


def active_model_text(model: dict, tz: tzinfo = UTC) -> str:
    """``"Active model: **v2** (neu-yolo-n), since 2026-01-05 14:00 UTC by retrain-1."``.

    The activation time and who promoted it are older registry fields that may be missing: then the
    sentence says so instead of printing ``None``.
    """
    since = fmt_time(model.get("activated_at"), tz)
    when = f"since {since}" if since else "activation time not recorded"
    by = model.get("promoted_by")
    by_text = f" by {by}" if isinstance(by, str) and by else ""
    return f"Active model: **{model['version']}** ({model['name']}), {when}{by_text}."


def validation_ap50(metrics: object) -> dict[str, float]:
    """Per-class AP@0.5 from a model's stored metrics (``per_class`` of floats or of ``{"ap50": ...}``)."""
    per_class = metrics.get("per_class") if isinstance(metrics, dict) else None
    out: dict[str, float] = {}
    for name, value in (per_class or {}).items():
        ap = value.get("ap50") if isinstance(value, dict) else value
        if isinstance(ap, int | float):
            out[str(name)] = float(ap)
    return out


def _precision(ctx: PageContext, models: pd.DataFrame) -> None:
    """Per class: precision from the operators' verdicts beside the active model's validation AP@0.5."""
    st.subheader("Precision from reviews, by class (filtered)")
    table = q(ctx, queries.review_precision, ctx.filters)
    if table.empty:
        empty_state("No reviewed defects for these filters.")
        return
    active = models[models["is_active"].astype(bool)] if not models.empty else models
    ap = validation_ap50(active.iloc[0]["metrics"]) if not active.empty else {}
    table = table.assign(validation_ap50=[ap.get(c, float("nan")) for c in table["class_name"]])
    st.dataframe(
        table,
        hide_index=True,
        key="models_precision",
        column_config={
            "class_name": "Class (the model's)", "reviewed": "Reviewed", "confirmed": "Confirmed",
            "relabelled": "Relabelled", "rejected": "Rejected",
            "precision": st.column_config.NumberColumn("Precision (confirmed / reviewed)", format="%.2f"),
            "validation_ap50": st.column_config.NumberColumn("Val. AP@0.5 (active model)", format="%.2f"),
        },
    )  # fmt: skip
    st.caption(
        "A relabelled detection was a real defect of another class: it counts against the class given."
    )


def _activations(ctx: PageContext) -> None:
    """Every activation (by hand, by a retrain run, by a daemon), newest first: the audit trail."""
    st.subheader("Activation history")
    history = q(ctx, queries.list_activations)
    if history.empty:
        empty_state("No activation recorded yet.")
        return
    st.dataframe(
        local_columns(history, ctx.tz, ("activated_at",)),
        hide_index=True,
        key="models_activations",
        column_config=table_columns(ACTIVATION_NAMES, ctx.tz),
    )
    forced = int(history["forced"].astype(bool).sum())
    if forced:
        st.warning(f"{forced} activation(s) overrode the retraining gate's rejection (see Why).")
    csv_button(history, "model-activations.csv", key="models_activations_csv")


def render(ctx: PageContext) -> None:
    st.title(TITLE)
    models = q(ctx, queries.list_model_versions)
    if models.empty:
        empty_state("No model version is registered yet.")
    else:
        active = models[models["is_active"].astype(bool)]
        if active.empty:
            st.warning("No model version is active.")
        else:
            a = active.iloc[0]
            st.success(active_model_text(a.to_dict(), ctx.tz))
        table = flatten_metrics(models)
        st.dataframe(
            local_columns(table, ctx.tz, ("created_at", "activated_at")),
            hide_index=True,
            key="models_table",
            column_config=table_columns(MODEL_NAMES, ctx.tz),
        )
        csv_button(table, "model-versions.csv", key="models_csv")

    _activations(ctx)
    _precision(ctx, models)

    st.subheader("Defects per model version (filtered)")
    usage = q(ctx, queries.defects_by_model, ctx.filters)
    if usage.empty:
        empty_state("No frames for these filters.")
    else:
        st.dataframe(
            usage,
            hide_index=True,
            key="models_usage",
            column_config={
                "model_version": "Model version",
                "frames": "Frames inspected",
                "defects": "Defects",
            },
        )
        csv_button(usage, "defects-per-model.csv", key="models_usage_csv")

    st.subheader("Retraining decisions")
    runs = q(ctx, queries.list_retrain_runs)
    if runs.empty:
        empty_state("No retraining run yet.")
    else:
        runs = runs.assign(summary=[json.dumps(s, sort_keys=True, default=str) for s in runs["summary"]])
        st.dataframe(
            local_columns(runs, ctx.tz, ("started_at", "finished_at")),
            hide_index=True,
            key="models_runs",
            column_config=table_columns(RUN_NAMES, ctx.tz),
        )
        csv_button(runs, "retrain-runs.csv", key="models_runs_csv")


if __name__ == "__main__":
    render(context())
