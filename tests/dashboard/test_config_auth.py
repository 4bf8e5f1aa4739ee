"""Dashboard settings and login hashes: the shipped configs load, bad values name their key."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from dashboard.auth import authenticate, check_hash_format, hash_password, verify_password
from dashboard.config import DEFAULT_CONFIG, DashboardConfig, absolute_sqlite_url, load_dashboard_config
from datasets.settings import REPO_ROOT, ConfigError

PRODUCTION = REPO_ROOT / "configs" / "dashboard-production.yaml"


def test_hash_round_trip_and_salting() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct hors", encoded)
    assert hash_password("correct horse") != encoded  # a fresh salt each time
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_pbkdf2_hashes_are_accepted() -> None:
    salt = b"0123456789abcdef"
    key = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 1000)
    encoded = f"pbkdf2_sha256$1000${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
    check_hash_format(encoded)
    assert verify_password("pw", encoded) and not verify_password("pW", encoded)


@pytest.mark.parametrize(
    "bad", ["hunter2", "scrypt$16384$8$1$salt", "scrypt$1000$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA", ""]
)
def test_malformed_hashes_are_refused_and_never_verify(bad: str) -> None:
    with pytest.raises(ValueError):
        check_hash_format(bad)
    assert not verify_password("hunter2", bad)


def test_authenticate() -> None:
    users = {"qa": hash_password("pw1")}
    assert authenticate(users, "qa", "pw1")
    assert not authenticate(users, "qa", "pw2")
    assert not authenticate(users, "nobody", "pw1")


def test_shipped_demo_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_dashboard_config(DEFAULT_CONFIG)
    assert not cfg.auth.enabled and cfg.reviews_enabled and cfg.review_url == cfg.db_url
    assert cfg.db_url == f"sqlite:///{tmp_path / 'var' / 'inspection.db'}"  # made absolute from the cwd
    assert load_dashboard_config(None) == cfg  # the default file


def test_production_config_needs_a_user() -> None:
    with pytest.raises(ConfigError, match="auth.users is empty"):
        load_dashboard_config(PRODUCTION)
    cfg = load_dashboard_config(PRODUCTION, overrides=[f"auth.users.qa={hash_password('pw')}"])
    assert cfg.auth.enabled and cfg.read_only and cfg.review_url and "steel_review" in cfg.review_url


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["auth.users.qa=plaintext"], "auth.users: .*user 'qa': not a password hash"),
        (["db_url=mysql://x/y"], "not supported"),
        (["db_url=nonsense"], "db_url"),
        (["refresh_s=0"], "refresh_s: 0 is not > 0"),
        (["default_time_range=Yesterday"], "default_time_range"),
        (["colour=red"], "colour: unknown key"),
    ],
)
def test_bad_config_values_name_their_key(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_dashboard_config(DEFAULT_CONFIG, overrides=overrides)


def test_db_option_wins_and_read_only_turns_reviews_off() -> None:
    cfg = load_dashboard_config(
        DEFAULT_CONFIG, db_url="postgresql+psycopg://u:p@h/db", overrides=["read_only=true"]
    )
    assert cfg.db_url == "postgresql+psycopg://u:p@h/db"
    assert not cfg.reviews_enabled and cfg.review_url is None
    assert DashboardConfig(read_only=True, review_db_url="sqlite:////x.db").review_url == "sqlite:////x.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel/a.db", "sqlite:////base/rel/a.db"),
        ("sqlite:////abs/a.db", "sqlite:////abs/a.db"),
        ("sqlite://", "sqlite://"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ],
)
def test_absolute_sqlite_url(url: str, expected: str) -> None:
    assert absolute_sqlite_url(url, base=Path("/base")) == expected
