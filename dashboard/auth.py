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
import secrets
from collections.abc import Mapping

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
        if authenticate(users, name.strip(), password):
            st.session_state[_SESSION_USER] = name.strip()
            st.rerun()
        st.error("Unknown user or wrong password.")
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises
