"""Why the classical texture model would call a defect crop what it does: each feature group's push.

Shown under the gallery's enlarged defect when ``explain_model`` names a classical bundle (``steel
classic train``); without it nothing is drawn. Only ``datasets.texture`` is used (NumPy, OpenCV,
scikit-image), never torch, so the dashboard stays light. The crop is cut to the defect's box when the
box can be located in it, so the daemon's margin of clean steel does not dilute the texture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.data import PageContext, media_path, q
from dashboard.export import box_in_crop
from dashboard.images import load_rgb
from datasets.settings import REPO_ROOT
from datasets.texture.bundle import MANIFEST, ClassicBundle, ClassicBundleError, load_classic_bundle
from datasets.texture.explain import Explanation, explain_crop


def bundle_path(configured: str) -> Path:
    """The configured folder as given (absolute or from the working directory), else from the repository."""
    path = Path(configured).expanduser()
    return path if path.is_absolute() or path.exists() else REPO_ROOT / path


@st.cache_resource(show_spinner=False, max_entries=4)
def _load(path: str, manifest_mtime: float) -> ClassicBundle:
    return load_classic_bundle(path)  # the mtime is only the cache key: a retrained bundle is re-read


def load_explainer(configured: str) -> ClassicBundle:
    path = bundle_path(configured)
    manifest = path / MANIFEST
    return _load(str(path), manifest.stat().st_mtime if manifest.is_file() else 0.0)


def _frame_wh(detail: dict) -> tuple[int | None, int | None]:
    out = []
    for key in ("frame_width", "frame_height"):
        value = detail.get(key)
        out.append(None if value is None or value != value else int(value))
    return out[0], out[1]


def defect_pixels(ctx: PageContext, detail: dict) -> np.ndarray | None:
    """uint8 gray ``(H, W)`` of the defect's box inside its stored crop (the whole crop when the box cannot
    be located), or None without a crop on disk."""
    crop = load_rgb(media_path(ctx, detail.get("crop_path")))
    if crop is None:
        return None
    xyxy = (float(detail["x1"]), float(detail["y1"]), float(detail["x2"]), float(detail["y2"]))
    box = box_in_crop(xyxy, crop.size, _frame_wh(detail))
    if box is not None:
        x1, y1, x2, y2 = box
        crop = crop.crop((int(x1), int(y1), int(np.ceil(x2)), int(np.ceil(y2))))
    return np.asarray(crop.convert("L"))


def explanation_table(why: Explanation) -> pd.DataFrame:
    """One row per feature group, the strongest push towards the predicted class first."""
    rows = sorted(why.margin_by_group.items(), key=lambda kv: -kv[1])
    return pd.DataFrame(
        {"feature_group": [g for g, _ in rows], f"push_to_{why.predicted}": [round(v, 3) for _, v in rows]}
    )


def show_explanation(why: Explanation, version: str) -> None:
    st.markdown(
        f"**Texture model** `{version}`: **{why.predicted}** ({why.scores[why.predicted]:.0%}), "
        f"runner-up {why.runner_up}; margin {why.margin:+.2f}"
    )
    table = explanation_table(why)
    st.bar_chart(table, x="feature_group", y=table.columns[1], horizontal=True)
    st.dataframe(table, hide_index=True)
    st.caption(
        "Each bar is a feature group's share of the margin between the two classes (linear model: the shares "
        f"and the classes' bias difference, {why.margin_intercept:+.2f}, add up to the margin)."
    )


def explain_defect(ctx: PageContext, defect_id: int) -> None:
    """The explanation block for one defect; nothing when ``explain_model`` is not configured."""
    configured = ctx.config.explain_model
    if not configured:
        return
    try:
        bundle = load_explainer(configured)
    except ClassicBundleError as exc:
        st.warning(f"No texture explanation: {exc}")
        return
    detail = q(ctx, queries.defect_detail, int(defect_id))
    pixels = None if detail is None else defect_pixels(ctx, detail)
    if pixels is None:
        st.caption("No crop on disk for the texture explanation.")
        return
    show_explanation(explain_crop(pixels, bundle.model), bundle.version)
