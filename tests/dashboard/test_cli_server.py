"""``steel dashboard`` as a service manager runs it: where it listens and how it stops.

The real command is started (``python -m steel dashboard``, in a new session so that anything left
behind can be found and stopped by its process group), and the kernel's own tables are read
(``/proc/net/tcp*``, ``/proc/<pid>/cmdline``): no assertion depends on timing, only on waiting up to a
generous limit for the server to come up or go away.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dashboard.auth import hash_password
from dashboard.cli import app, is_local_address
from datasets.settings import REPO_ROOT

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc tables")
runner = CliRunner()
START_LIMIT_S = 120.0  # a loaded 2-core machine starts Streamlit in 5-30 s
_LISTEN = "0A"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as /proc writes them) that listen on TCP ``port``, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == _LISTEN and int(hex_port, 16) == port:
                found.append(address)
    return found


def _processes_serving(port: int) -> list[int]:
    """Pids of Streamlit servers started for ``port`` (found by their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if b"streamlit" in argv and b"--server.port" in argv and str(port).encode() in argv:
            pids.append(int(entry.name))
    return pids


def _wait_for(condition, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.fixture
def dashboard_server(seeded_url: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """``python -m steel dashboard`` on a free port; its whole process group is killed afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "steel", "dashboard", "--db", seeded_url, "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if not _wait_for(lambda: _listening(port) or proc.poll() is not None, START_LIMIT_S):
            pytest.fail(f"the dashboard did not listen on {port} within {START_LIMIT_S:.0f} s")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        yield proc, port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started: the server and any orphan
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


def test_the_dashboard_listens_on_loopback_only_by_default(dashboard_server) -> None:
    _, port = dashboard_server
    assert _listening(port) == ["0100007F"]  # 127.0.0.1, and nothing on 0.0.0.0 or ::


def test_sigterm_stops_the_server_frees_the_port_and_leaves_no_orphan(dashboard_server) -> None:
    proc, port = dashboard_server
    assert _processes_serving(port) != []
    os.kill(proc.pid, signal.SIGTERM)  # what systemd sends to the process it started
    proc.wait(timeout=60)
    assert _wait_for(lambda: not _listening(port) and not _processes_serving(port), 60)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # a restarted service can take the port again


def test_print_command_binds_loopback_unless_an_address_is_given(seeded_url: str) -> None:
    local = runner.invoke(app, ["dashboard", "--db", seeded_url, "--print-command"])
    assert local.exit_code == 0 and "--server.address 127.0.0.1" in local.stdout
    assert "warning" not in local.stderr
    opened = runner.invoke(app, ["dashboard", "--db", seeded_url, "--address", "0.0.0.0", "--print-command"])
    assert opened.exit_code == 0 and "--server.address 0.0.0.0" in opened.stdout
    assert "warning: login is off and the dashboard listens on 0.0.0.0" in opened.stderr


def test_no_warning_when_login_is_on(seeded_url: str, tmp_path: Path) -> None:
    config = tmp_path / "dashboard.yaml"
    config.write_text(f'auth:\n  enabled: true\n  users:\n    qa: "{hash_password("s3cret!", n=16)}"\n')
    args = ["dashboard", "--config", str(config), "--db", seeded_url, "--address", "0.0.0.0"]
    result = runner.invoke(app, [*args, "--print-command"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


@pytest.mark.parametrize(
    ("address", "local"),
    [("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("dashboard.plant.lan", False)],
)  # fmt: skip
def test_loopback_addresses_are_told_from_open_ones(address: str, local: bool) -> None:
    assert is_local_address(address) is local
