"""Optional login for the dashboard: salted password hashes in the config, checked in constant time.

Hashes use the standard library's memory-hard ``hashlib.scrypt`` (argon2 and bcrypt are not
dependencies of the project) and are self-describing strings::

    scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>

so the cost can be raised later without invalidating stored hashes. Make one with
``steel dashboard-hash-password`` (or :func:`hash_password`). PBKDF2-SHA256 hashes
(``pbkdf2_sha256$<iterations>$<salt>$<key>``) are accepted too, for hosts whose OpenSSL lacks scrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # OWASP's minimum for scrypt; ~50 ms per check
_KEY_BYTES = 32
_SESSION_USER = "auth_user"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new salted scrypt hash of ``password`` for the config's ``auth.users``."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def check_hash_format(encoded: str) -> None:
    """Raise ValueError when ``encoded`` is not a hash this module can verify (a config validator)."""
    parts = encoded.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(v) for v in parts[1:4])
            if n < 2 or n & (n - 1) or r < 1 or p < 1:
                raise ValueError("bad scrypt parameters")
            base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
            return
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            if int(parts[1]) < 1:
                raise ValueError("bad iteration count")
            base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
            return
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed password hash: {exc}") from None
    raise ValueError(
        "not a password hash (expected 'scrypt$n$r$p$salt$key' or 'pbkdf2_sha256$iterations$salt$key'; "
        "make one with `steel dashboard-hash-password`)"
    )


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the hash; False (never an exception) for a malformed hash."""
    try:
        check_hash_format(encoded)
    except ValueError:
        return False
    parts = encoded.split("$")
    secret = password.encode("utf-8")
    if parts[0] == "scrypt":
        n, r, p = (int(v) for v in parts[1:4])
        salt, expected = base64.b64decode(parts[4]), base64.b64decode(parts[5])
        key = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=256 * 2**20)
    else:
        salt, expected = base64.b64decode(parts[2]), base64.b64decode(parts[3])
        key = hashlib.pbkdf2_hmac("sha256", secret, salt, int(parts[1]), dklen=len(expected))
    return hmac.compare_digest(key, expected)


def authenticate(users: Mapping[str, str], username: str, password: str) -> bool:
    """Whether ``username`` is configured and ``password`` is theirs (same work for unknown names)."""
    encoded = users.get(username)
    if encoded is None:
        verify_password(password, hash_password("x-unknown-user"))  # no timing hint about valid names
        return False
    return verify_password(password, encoded)


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0  # clock time of the latest failure


class LoginThrottle:
    """Exponential back-off on failed sign-ins, per user name and per client address.

    After ``free`` failures a key (``user:NAME`` or ``addr:IP``) must wait ``base_s * 2**k`` seconds
    (capped at ``max_s``) after its latest failure before the next attempt is even checked; a success
    clears the user's and the address's count, and a count is forgotten ``forget_s`` after its latest
    failure. At most ``max_keys`` keys are kept (the stalest go first), so guessing with random names
    cannot grow memory. Shared by every session of the server; the clock is injectable for tests.
    """

    def __init__(
        self,
        *,
        user_free: int = 3,
        address_free: int = 10,
        base_s: float = 1.0,
        max_s: float = 300.0,
        forget_s: float = 3600.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = {"user": user_free, "addr": address_free}
        self.base_s, self.max_s, self.forget_s, self.max_keys = base_s, max_s, forget_s, max_keys
        self.clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys(user: str, address: str | None) -> list[str]:
        return [f"user:{user}"] + ([f"addr:{address}"] if address else [])

    def _wait(self, key: str, now: float) -> float:
        entry = self._failures.get(key)
        if entry is None or now - entry.last >= self.forget_s:
            return 0.0
        over = entry.count - self.free[key.split(":", 1)[0]]
        if over < 0:
            return 0.0
        delay = min(self.max_s, self.base_s * 2.0 ** min(over, 64))
        return max(0.0, entry.last + delay - now)

    def retry_after(self, user: str, address: str | None) -> float:
        """Seconds before ``user`` from ``address`` may try again (0: now)."""
        with self._lock:
            now = self.clock()
            return max(self._wait(key, now) for key in self._keys(user, address))

    def reserve(self, user: str, address: str | None) -> float:
        """Claim the right to check one attempt: 0 when it may be checked (it is counted as a failure
        at once, in the same locked step, so parallel attempts cannot all pass before the first
        failure is recorded; a success clears it), else the seconds to wait (nothing is counted)."""
        with self._lock:
            now = self.clock()
            wait = max(self._wait(key, now) for key in self._keys(user, address))
            if wait == 0:
                self._record_failure(user, address, now)
            return wait

    def failed(self, user: str, address: str | None) -> None:
        with self._lock:
            self._record_failure(user, address, self.clock())

    def _record_failure(self, user: str, address: str | None, now: float) -> None:
        """Count one failure for the user and the address (the caller holds the lock)."""
        for key in self._keys(user, address):
            entry = self._failures.pop(key, None) or _Failures()
            if now - entry.last >= self.forget_s:
                entry.count = 0
            entry.count += 1
            entry.last = now
            self._failures[key] = entry  # most recent last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, user: str, address: str | None) -> None:
        with self._lock:
            for key in self._keys(user, address):
                self._failures.pop(key, None)


LOGIN_THROTTLE = LoginThrottle()


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    signed_in: bool
    checked: bool  # False: refused by the throttle, the password was not even looked at
    wait_s: float  # before the next attempt is checked


def attempt_login(
    users: Mapping[str, str], username: str, password: str, address: str | None, throttle: LoginThrottle
) -> LoginAttempt:
    """One sign-in attempt through the throttle (a throttled one is refused unchecked). The attempt is
    counted as a failure before the (slow) password check and cleared on success."""
    wait = throttle.reserve(username, address)
    if wait > 0:
        return LoginAttempt(signed_in=False, checked=False, wait_s=wait)
    if authenticate(users, username, password):
        throttle.succeeded(username, address)
        return LoginAttempt(signed_in=True, checked=True, wait_s=0.0)
    return LoginAttempt(signed_in=False, checked=True, wait_s=throttle.retry_after(username, address))


def require_login(users: Mapping[str, str]) -> str:
    """Show a login form until someone logs in; returns the user name. Stops the script meanwhile."""
    import streamlit as st  # here, so hashing (config validation, the CLI) does not load Streamlit

    user = st.session_state.get(_SESSION_USER)
    if user in users:
        if st.sidebar.button("Log out", key="auth_logout"):
            del st.session_state[_SESSION_USER]
            st.rerun()
        st.sidebar.caption(f"Signed in as **{user}**")
        return str(user)
    st.title("Sign in")
    with st.form("login"):
        name = st.text_input("User", key="auth_name")
        password = st.text_input("Password", type="password", key="auth_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        address = st.context.ip_address  # None where unknown (tests); the user's count still applies
        attempt = attempt_login(users, name.strip(), password, address, LOGIN_THROTTLE)
        if attempt.signed_in:
            st.session_state[_SESSION_USER] = name.strip()
            st.rerun()
        if attempt.checked:
            st.error("Unknown user or wrong password.")
        if attempt.wait_s > 0:
            st.warning(f"Too many failed sign-ins: try again in {math.ceil(attempt.wait_s)} s.")
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises
