"""The dashboard's settings (``configs/dashboard.yaml``), validated before the first page is drawn.

``db_url`` is a SQLAlchemy URL: ``sqlite:///var/inspection.db`` (relative paths are taken from the
directory the dashboard is started in) or ``postgresql+psycopg://user:pass@host/db``. With ``read_only``
every query runs on a read-only connection (SQLite ``mode=ro``, PostgreSQL read-only transactions) and
operator reviews go through ``review_db_url`` (a role allowed to insert into ``reviews``) or are disabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dashboard.auth import check_hash_format
from dashboard.localtime import TIME_PRESETS, plant_zone
from datasets.settings import REPO_ROOT, StrictModel, load_config
from inspection.storage.grading import GradingRules, read_grading_rules

DEFAULT_CONFIG = REPO_ROOT / "configs" / "dashboard.yaml"
DEFAULT_INSPECTION_CONFIG = REPO_ROOT / "configs" / "inspection.yaml"
DEFAULT_DB_URL = "sqlite:///var/inspection.db"


def _check_url(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            f"{url!r} is not a SQLAlchemy database URL (e.g. sqlite:///var/inspection.db)"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"backend {parsed.get_backend_name()!r} is not supported (sqlite or postgresql)")
    return url


def absolute_sqlite_url(url: str, *, base: Path | None = None) -> str:
    """The URL with a relative SQLite path made absolute (from ``base``, default the current directory).

    Streamlit and the ``steel dashboard`` command may run in different directories; an absolute path
    names the same file for both. Other URLs are returned unchanged.
    """
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return url
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return parsed.set(database=str(path.resolve())).render_as_string(hide_password=False)


class AuthConfig(StrictModel):
    """Login: off for the local demo; on in production, with at least one user."""

    enabled: bool = False
    users: dict[str, str] = Field(default_factory=dict)
    """User name -> password hash (``steel dashboard-hash-password``); never plain passwords."""

    @field_validator("users")
    @classmethod
    def _hashes(cls, users: dict[str, str]) -> dict[str, str]:
        for name, encoded in users.items():
            if not name.strip():
                raise ValueError("user names must not be empty")
            try:
                check_hash_format(encoded)
            except ValueError as exc:
                raise ValueError(f"user {name!r}: {exc}") from None
        return users

    @model_validator(mode="after")
    def _someone_can_log_in(self) -> AuthConfig:
        if self.enabled and not self.users:
            raise ValueError(
                "auth.enabled is true but auth.users is empty: add a user with a hash from "
                "`steel dashboard-hash-password`"
            )
        return self


class DashboardConfig(StrictModel):
    """Everything the dashboard reads from its YAML file (all keys optional)."""

    title: str = "Steel inspection QA"
    db_url: str = DEFAULT_DB_URL
    read_only: bool = False
    review_db_url: str | None = None
    """Where reviews are written when ``read_only`` (default: nowhere, the Review page is view-only)."""
    auth: AuthConfig = Field(default_factory=AuthConfig)
    refresh_s: float = Field(5.0, gt=0, le=3600)
    """How often the Live page refreshes."""
    live_silent_after_s: float = Field(120.0, gt=0)
    """A line whose latest frame is older than this is flagged silent on the Live page."""
    cache_ttl_s: float = Field(30.0, ge=0, le=3600)
    """How long an aggregate is reused before it is queried again (0: never reused)."""
    default_time_range: str = "Last 7 days"
    plant_timezone: str = "UTC"
    """IANA name of the plant's time zone (``Europe/Berlin``): every time shown, the shift and day
    buckets, date axes and the custom date range follow the plant's clock."""
    shift_start_hour: int = Field(6, ge=0, le=23)
    """Local hour (``plant_timezone``) a shift starts; shifts are 8 h (sets the shift buckets)."""
    media_root: str | None = None
    """Folder that relative ``crop_path``/``image_path`` values are relative to (default: the SQLite
    database's folder, then the current directory)."""
    live_dir: str | None = None
    """Where the daemon refreshes the annotated latest frame of each line (``<output.dir>/live``, files
    ``<line>.jpg``); relative like ``media_root``. Default: found beside the kept frame images or the
    SQLite database. The Live page falls back to the latest kept frame."""
    explain_model: str | None = None
    """Classical texture bundle (``models/neu-classic``) whose per-feature-group explanation the gallery's
    enlarged view shows; relative paths from the working directory, then the repository. None: none."""
    page_size: int = Field(24, ge=1, le=200)
    csv_max_rows: int = Field(100_000, ge=1)
    coil_map_max_points: int = Field(20_000, ge=100)
    """Above this many defects on a coil, the map shows a density grid instead of single points."""
    inspection_config: str | None = None
    """The daemon's config file (default ``configs/inspection.yaml``): its ``grading:`` section is the
    rules the daemon grades closed coils by; the pages show grades in its order."""
    grading: GradingRules | None = None
    """A copy of the grading rules for a dashboard without the daemon's file (None: read from
    ``inspection_config``). A writable dashboard grades closed coils that have no grade at all by them."""
    strip_width_m: dict[str, float] = Field(default_factory=dict)
    """Strip width per line name (``"*"``: every other line), for defects per m²; unknown: not shown."""
    line_surface: dict[str, Literal["top", "bottom"]] = Field(default_factory=dict)
    """Which strip surface each line's camera sees (line name -> ``top``/``bottom``); maps and reports
    name it. Lines not listed: not said."""
    cross_zero_side: Literal["operator", "drive"] = "operator"
    """Which strip edge ``cross_m = 0`` is (the camera's left edge): labels the coil maps' sides."""
    report_crops: int = Field(8, ge=0, le=50)
    """How many of the most certain defects' crops a coil or shift report shows."""

    @field_validator("strip_width_m")
    @classmethod
    def _widths(cls, widths: dict[str, float]) -> dict[str, float]:
        for line, width in widths.items():
            if not 0 < width < 10:
                raise ValueError(f"{line!r}: a strip width in metres, between 0 and 10, got {width}")
        return widths

    def strip_width_of(self, line: str) -> float | None:
        return self.strip_width_m.get(line, self.strip_width_m.get("*"))

    @field_validator("db_url", "review_db_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _check_url(url)

    @field_validator("plant_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        plant_zone(value)
        return value

    @field_validator("default_time_range")
    @classmethod
    def _preset(cls, value: str) -> str:
        if value not in TIME_PRESETS:
            raise ValueError(f"{value!r} is not one of {list(TIME_PRESETS)}")
        return value

    @property
    def grading_rules(self) -> GradingRules:
        """The rules in force (``load_dashboard_config`` fills ``grading`` in from the daemon's file)."""
        return self.grading if self.grading is not None else GradingRules()

    @property
    def reviews_enabled(self) -> bool:
        return not self.read_only or self.review_db_url is not None

    @property
    def review_url(self) -> str | None:
        """The URL reviews are written through, or None when reviews are disabled."""
        return self.review_db_url or (None if self.read_only else self.db_url)


def load_dashboard_config(
    path: str | Path | None = None, *, db_url: str | None = None, overrides: list[str] | None = None
) -> DashboardConfig:
    """The config from ``path`` (default ``configs/dashboard.yaml`` when it exists, else the defaults).

    ``db_url`` (the ``--db`` option) replaces the file's; relative SQLite paths become absolute.
    Raises ``ConfigError`` naming every bad key.
    """
    if path is None and DEFAULT_CONFIG.is_file():
        path = DEFAULT_CONFIG
    cfg = load_config(path, DashboardConfig, overrides) if path is not None else DashboardConfig()
    updates: dict[str, object] = {}
    if cfg.grading is None:
        rules_file = Path(cfg.inspection_config) if cfg.inspection_config else DEFAULT_INSPECTION_CONFIG
        if cfg.inspection_config or rules_file.is_file():
            updates["grading"] = read_grading_rules(rules_file)
    if db_url is not None:
        updates["db_url"] = _check_url(db_url)
    updates["db_url"] = absolute_sqlite_url(str(updates.get("db_url", cfg.db_url)))
    if cfg.review_db_url is not None:
        updates["review_db_url"] = absolute_sqlite_url(cfg.review_db_url)
    return cfg.model_copy(update=updates)
