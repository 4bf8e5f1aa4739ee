"""Media paths from database rows are confined to the media root: absolute, ``..`` and symlinks out refused.

Real files in a real folder tree; the page-facing ``dashboard.data.media_path`` is called with a real
config, as the Gallery, Review and Live pages call it with a row's ``crop_path``/``image_path``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dashboard.config import DashboardConfig
from dashboard.data import PageContext, media_path
from dashboard.filters import FilterOptions, Filters
from dashboard.media import confined_media_path, media_roots


@pytest.fixture
def plant(tmp_path: Path, neu_root: Path) -> Path:
    """``media/crops/line1/7_t1.jpg`` (a real NEU-DET image) and ``secret.jpg`` beside the media root."""
    crops = tmp_path / "media" / "crops" / "line1"
    crops.mkdir(parents=True)
    shutil.copyfile(neu_root / "images" / "crazing_1.jpg", crops / "7_t1.jpg")
    shutil.copyfile(neu_root / "images" / "inclusion_10.jpg", tmp_path / "secret.jpg")
    (crops / "escape.jpg").symlink_to(tmp_path / "secret.jpg")
    return tmp_path


def _ctx(plant: Path, **config: object) -> PageContext:
    cfg = DashboardConfig(db_url=f"sqlite:///{plant / 'db' / 'inspection.db'}", **config)
    return PageContext(config=cfg, filters=Filters(), options=FilterOptions())


def test_a_relative_path_inside_the_media_root_is_found(plant: Path) -> None:
    ctx = _ctx(plant, media_root=str(plant / "media"))
    assert media_path(ctx, "crops/line1/7_t1.jpg") == plant / "media" / "crops" / "line1" / "7_t1.jpg"


def test_an_absolute_path_inside_the_media_root_is_found(plant: Path) -> None:
    ctx = _ctx(plant, media_root=str(plant / "media"))
    inside = plant / "media" / "crops" / "line1" / "7_t1.jpg"
    assert media_path(ctx, str(inside)) == inside  # a daemon with an absolute output.dir stores these


@pytest.mark.parametrize(
    "stored",
    [
        "{plant}/secret.jpg",  # absolute, outside
        "/etc/passwd",
        "../secret.jpg",  # relative escapes
        "crops/../../secret.jpg",
        "crops/line1/../7_t1.jpg",  # `..` is refused even when it would stay inside
        "crops/line1/escape.jpg",  # a symlink inside that points outside
        "~/secret.jpg",  # no home expansion for a row
        "crops/line1/7_t1.jpg\0.png",
        "crops/line1",  # a folder, not a file
        "",
    ],
)
def test_a_stored_path_outside_the_media_root_is_refused(plant: Path, stored: str) -> None:
    ctx = _ctx(plant, media_root=str(plant / "media"))
    assert media_path(ctx, stored.format(plant=plant)) is None


@pytest.mark.parametrize("stored", [None, float("nan")])
def test_a_null_path_is_no_file_whether_sql_or_pandas_gives_it(plant: Path, stored: None | float) -> None:
    """A defect stored without a crop (``save_crops: false``) reaches the pages as None or NaN."""
    ctx = _ctx(plant, media_root=str(plant / "media"))
    assert media_path(ctx, stored) is None  # type: ignore[arg-type]  # NaN is what pandas hands over


def test_without_a_media_root_paths_are_confined_to_the_database_folder_cwd_and_repo(
    plant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (plant / "db").mkdir()
    monkeypatch.chdir(plant / "media")
    ctx = _ctx(plant)
    assert media_path(ctx, "crops/line1/7_t1.jpg") == plant / "media" / "crops" / "line1" / "7_t1.jpg"
    assert media_path(ctx, str(plant / "secret.jpg")) is None
    assert media_path(ctx, "../secret.jpg") is None


def test_the_file_system_root_is_never_a_media_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")  # a service manager's default working directory
    roots = media_roots(media_root=None, live_dir=None, db_folder=None)
    assert Path("/") not in roots
    assert (
        confined_media_path("/etc/passwd", roots) is None and confined_media_path("etc/passwd", roots) is None
    )


def test_the_live_folder_is_a_root_beside_the_media_root(plant: Path) -> None:
    live = plant / "live"
    live.mkdir()
    shutil.copyfile(plant / "secret.jpg", live / "L1.jpg")
    ctx = _ctx(plant, media_root=str(plant / "media"), live_dir=str(live))
    assert media_path(ctx, str(live / "L1.jpg")) == live / "L1.jpg"
    assert media_path(ctx, str(plant / "secret.jpg")) is None
