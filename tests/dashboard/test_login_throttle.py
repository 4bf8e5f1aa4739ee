"""Login back-off per user and per client address, driven by a fake clock (no sleeping, no timing)."""

from __future__ import annotations

import threading

import pytest
import yaml
from streamlit.testing.v1 import AppTest

import dashboard.auth
from dashboard.auth import LoginThrottle, attempt_login, hash_password
from tests.dashboard.conftest import APP

USERS = {"qa": hash_password("s3cret!", n=2**4)}  # a cheap hash: these tests check counting, not scrypt


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(user_free=3, address_free=10, base_s=1.0, max_s=300.0, clock=clock)


def test_fifty_guesses_in_four_seconds_get_only_five_checked(clock, throttle) -> None:
    checked = 0
    for _ in range(50):  # one guess every 80 ms, as the attacker did
        attempt = attempt_login(USERS, "qa", "guess", "10.0.0.9", throttle)
        checked += attempt.checked
        assert not attempt.signed_in
        clock.now += 0.08
    # three free failures, then waits of 1 s, 2 s, 4 s: checked at 0, 0.08, 0.16, 1.20 and 3.20 s
    assert checked == 5
    assert throttle.retry_after("qa", "10.0.0.9") == pytest.approx(1003.20 + 4.0 - clock.now)


def test_the_right_password_is_not_checked_while_the_user_waits(clock, throttle) -> None:
    for _ in range(3):
        assert attempt_login(USERS, "qa", "wrong", None, throttle).checked
    refused = attempt_login(USERS, "qa", "s3cret!", None, throttle)
    assert (refused.signed_in, refused.checked) == (False, False) and refused.wait_s == pytest.approx(1.0)
    clock.now += 1.0
    assert attempt_login(USERS, "qa", "s3cret!", None, throttle).signed_in
    assert throttle.retry_after("qa", None) == 0.0  # a success clears the count


def test_waits_double_up_to_the_cap(clock, throttle) -> None:
    waits = []
    for _ in range(14):
        clock.now += throttle.retry_after("qa", None)
        waits.append(attempt_login(USERS, "qa", "wrong", None, throttle).wait_s)
    assert waits[:6] == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0]
    assert waits[-1] == 300.0 and max(waits) == 300.0


def test_one_address_guessing_many_names_is_throttled_for_every_name(clock, throttle) -> None:
    for i in range(10):
        attempt_login(USERS, f"user{i}", "guess", "10.0.0.9", throttle)
    assert throttle.retry_after("qa", "10.0.0.9") == pytest.approx(1.0)  # a name it never tried
    assert throttle.retry_after("qa", "10.0.0.7") == 0.0  # the real user elsewhere is not locked out
    assert attempt_login(USERS, "qa", "s3cret!", "10.0.0.7", throttle).signed_in


def test_failures_are_forgotten_after_an_hour(clock, throttle) -> None:
    for _ in range(5):
        clock.now += throttle.retry_after("qa", None)
        attempt_login(USERS, "qa", "wrong", None, throttle)
    clock.now += 3600.0
    assert throttle.retry_after("qa", None) == 0.0
    assert attempt_login(USERS, "qa", "wrong", None, throttle).wait_s == 0.0  # counting starts again


def test_random_names_cannot_grow_the_throttle_without_bound(clock) -> None:
    throttle = LoginThrottle(max_keys=100, clock=clock)
    for i in range(1000):
        throttle.failed(f"name{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(throttle._failures) == 100


@pytest.fixture
def login_app(tmp_path, seeded_url: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The dashboard with login on for user ``qa`` (password ``s3cret!``), configured as the CLI does."""
    cfg = tmp_path / "dashboard.yaml"
    auth = {"enabled": True, "users": {"qa": hash_password("s3cret!")}}
    cfg.write_text(yaml.safe_dump({"db_url": seeded_url, "auth": auth}), encoding="utf-8")
    monkeypatch.setenv("STEEL_DASHBOARD_CONFIG", str(cfg))
    monkeypatch.delenv("STEEL_DASHBOARD_DB", raising=False)
    return AppTest.from_file(str(APP), default_timeout=60)


@pytest.mark.usefixtures("clear_streamlit_caches")
def test_the_sign_in_page_refuses_a_throttled_user_until_the_wait_is_over(
    login_app: AppTest, clock, throttle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard.auth, "LOGIN_THROTTLE", throttle)
    at = login_app
    at.run()
    at.text_input(key="auth_name").set_value("qa")
    for _ in range(3):
        at.text_input(key="auth_password").set_value("wrong")
        at.button[0].click()
        at.run()
        assert "wrong password" in at.error[0].value
    assert "try again in 1 s" in at.warning[0].value
    at.text_input(key="auth_password").set_value("s3cret!")
    at.button[0].click()
    at.run()
    assert at.title[0].value == "Sign in" and not at.error  # refused unchecked: no "wrong password"
    assert "Too many failed sign-ins" in at.warning[0].value
    clock.now += 1.0
    at.text_input(key="auth_password").set_value("s3cret!")
    at.button[0].click()
    at.run()
    assert not at.exception and at.title[0].value == "Overview"


def test_parallel_guesses_cannot_all_pass_before_the_first_failure_is_recorded(throttle) -> None:
    """Twenty sign-ins at once (twenty browser tabs): the password check is slow (scrypt), so a throttle
    that counted a failure only after checking let every one of them be checked."""
    users = {"qa": hash_password("s3cret!")}  # the real cost: the window the race needs
    start = threading.Barrier(20)
    checked: list[bool] = []

    def guess() -> None:
        start.wait()
        checked.append(attempt_login(users, "qa", "guess", "10.0.0.9", throttle).checked)

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(checked) == 20 and sum(checked) == 3  # the user's three free attempts, no more


def test_a_right_password_after_parallel_failures_still_signs_in_and_clears_the_count(throttle) -> None:
    for _ in range(2):
        assert attempt_login(USERS, "qa", "guess", "10.0.0.9", throttle).checked
    assert attempt_login(USERS, "qa", "s3cret!", "10.0.0.9", throttle).signed_in
    assert throttle.retry_after("qa", "10.0.0.9") == 0.0
