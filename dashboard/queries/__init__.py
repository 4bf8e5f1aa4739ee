"""Every SQL statement the dashboard runs, for SQLite and PostgreSQL, one module per topic.

Aggregation happens in the database (``GROUP BY``, date buckets computed from epoch seconds, which both
backends can do), so a page reads a few hundred rows however many defects are stored. Listings are paged
with ``LIMIT``. Functions take an ``Engine`` or a ``Connection`` and a :class:`~dashboard.filters.Filters`
and return small pandas frames (column names documented per function) or frozen dataclasses.

Pages call them through this package (``queries.totals``), which names every query function once: the
page cache (:func:`dashboard.data.q`) accepts only functions found here.

* :mod:`~dashboard.queries.base`: connections and the filters as ``WHERE`` terms
* :mod:`~dashboard.queries.options`: schema check and the sidebar's choices
* :mod:`~dashboard.queries.totals`: Overview figures and the Pareto
* :mod:`~dashboard.queries.trends`: per-bucket counts for the Trends page
* :mod:`~dashboard.queries.defects`: defect pages (Gallery, Review)
* :mod:`~dashboard.queries.reviews`: reviews and the VoTT export rows
* :mod:`~dashboard.queries.coils`: coils and the coil map
* :mod:`~dashboard.queries.models`: model registry and retraining decisions
* :mod:`~dashboard.queries.live`: the Live page
"""

from dashboard.queries.base import Bind, defect_conditions, frame_conditions
from dashboard.queries.coils import (
    COIL_COLUMNS,
    COIL_DEFECT_COLUMNS,
    coil_defects,
    coil_density,
    count_coil_defects,
    list_coils,
)
from dashboard.queries.defects import (
    DEFECT_COLUMNS,
    REVIEW_STATES,
    SORTS,
    count_defects,
    defect_detail,
    list_defects,
)
from dashboard.queries.live import (
    FRAME_BOX_COLUMNS,
    GAP_COLUMNS,
    LIVE_COLUMNS,
    LIVE_STAT_COLUMNS,
    frame_boxes,
    latest_frames,
    live_stats,
    recent_gaps,
)
from dashboard.queries.models import (
    MODEL_COLUMNS,
    RETRAIN_COLUMNS,
    defects_by_model,
    list_activations,
    list_model_versions,
    list_retrain_runs,
)
from dashboard.queries.options import REQUIRED_TABLES, filter_options, schema_problem
from dashboard.queries.reviews import (
    EXPORT_COLUMNS,
    PRECISION_COLUMNS,
    REVIEW_COLUMNS,
    latest_review_id,
    list_reviews,
    review_precision,
    review_summary,
    reviewed_for_export,
)
from dashboard.queries.totals import Totals, defects_by_class, pareto, totals
from dashboard.queries.trends import (
    BUCKET_SECONDS,
    SIZE_COLUMNS,
    TREND_TIME_COLUMNS,
    check_bucket,
    defect_trend,
    frame_trend,
)

__all__ = [
    "BUCKET_SECONDS",
    "Bind",
    "COIL_COLUMNS",
    "COIL_DEFECT_COLUMNS",
    "DEFECT_COLUMNS",
    "EXPORT_COLUMNS",
    "FRAME_BOX_COLUMNS",
    "GAP_COLUMNS",
    "LIVE_COLUMNS",
    "LIVE_STAT_COLUMNS",
    "MODEL_COLUMNS",
    "PRECISION_COLUMNS",
    "REQUIRED_TABLES",
    "RETRAIN_COLUMNS",
    "REVIEW_COLUMNS",
    "REVIEW_STATES",
    "SIZE_COLUMNS",
    "SORTS",
    "TREND_TIME_COLUMNS",
    "Totals",
    "check_bucket",
    "coil_defects",
    "coil_density",
    "count_coil_defects",
    "count_defects",
    "defect_conditions",
    "defect_detail",
    "defect_trend",
    "defects_by_class",
    "defects_by_model",
    "filter_options",
    "frame_boxes",
    "frame_conditions",
    "frame_trend",
    "latest_frames",
    "latest_review_id",
    "list_coils",
    "list_defects",
    "list_activations",
    "list_model_versions",
    "list_retrain_runs",
    "list_reviews",
    "live_stats",
    "pareto",
    "recent_gaps",
    "review_precision",
    "review_summary",
    "reviewed_for_export",
    "schema_problem",
    "totals",
]
