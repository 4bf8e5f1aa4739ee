"""A real ``streamlit run`` server of the dashboard, loaded by headless Chromium (Debian's package).

Chromium's one-shot ``--screenshot``/``--dump-dom`` modes capture at the page's load event, before
Streamlit's websocket has delivered anything (the page is still blank then), so the test drives the
same headless Chromium through the DevTools protocol instead: it waits until the overview's metrics are
on screen, saves a screenshot under the test's temp dir and reads the rendered DOM. The websocket
client is the ``websockets`` package, which Streamlit's server already depends on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from dashboard.cli import streamlit_command
from datasets.settings import REPO_ROOT

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
    "--disable-crash-reporter",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read()
    except OSError:
        return None


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process group this test started (the server or the browser and their children)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class DevTools:
    """The few DevTools protocol calls the test needs, over one page target's websocket."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.conn = None
        self.next_id = 0

    async def __aenter__(self) -> DevTools:
        from websockets.asyncio.client import connect

        self.conn = await connect(self.ws_url, max_size=256 * 2**20, open_timeout=30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()

    async def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        my_id = self.next_id
        await self.conn.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            data = json.loads(await asyncio.wait_for(self.conn.recv(), timeout=30))
            if data.get("id") == my_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data["result"]

    async def evaluate(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


RENDERED = """(() => {
  const values = document.querySelectorAll('[data-testid="stMetricValue"]').length;
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  return values >= 5 && !running && document.querySelectorAll('[data-testid="stVegaLiteChart"]').length >= 1;
})()"""


async def _capture(ws_url: str, png: Path, *, timeout: float) -> str:
    async with DevTools(ws_url) as dt:
        deadline = time.monotonic() + timeout
        while not await dt.evaluate(RENDERED):
            if time.monotonic() > deadline:
                text = await dt.evaluate("document.body ? document.body.innerText : ''")
                raise TimeoutError(
                    f"the overview did not render in {timeout:.0f} s; page text: {text!r:.500}"
                )
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # let the chart finish drawing
        shot = await dt.call("Page.captureScreenshot", format="png")
        png.write_bytes(base64.b64decode(shot["data"]))
        return str(await dt.evaluate("document.documentElement.outerHTML"))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI: apt-get install -y chromium)")
def test_overview_renders_in_headless_chromium(seeded_url: str, tmp_path: Path) -> None:
    port = _free_port()
    cmd, env = streamlit_command(db_url=seeded_url, port=port, address="127.0.0.1")
    server = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    browser = None
    try:
        _wait(
            lambda: server.poll() is not None or _get(f"http://127.0.0.1:{port}/_stcore/health") == b"ok",
            timeout=90,
            what="the Streamlit server",
        )
        assert server.poll() is None, server.stdout.read().decode(errors="replace")[-3000:]
        profile = tmp_path / "chromium-profile"
        browser = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        active = profile / "DevToolsActivePort"
        debug_port = _wait(
            lambda: active.is_file() and active.read_text().split("\n")[0].strip(),
            timeout=60,
            what="chromium",
        )

        def page_target() -> str | None:
            listing = _get(f"http://127.0.0.1:{debug_port}/json/list")
            pages = [t for t in json.loads(listing or b"[]") if t.get("type") == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        ws_url = _wait(page_target, timeout=30, what="the chromium page")
        png = tmp_path / "overview.png"
        dom = asyncio.run(_capture(ws_url, png, timeout=90))
    finally:
        if browser is not None:
            _stop(browser)
        _stop(server)

    assert "Overview" in dom and "Frames inspected" in dom and "Defects per 100 m" in dom
    for bad in ("Traceback", "StreamlitAPIException", 'data-testid="stException"'):
        assert bad not in dom
    with Image.open(png) as im:
        assert im.width == 1280 and im.height > 600  # the viewport of the 1280x900 window
        spread = ImageStat.Stat(im.convert("L")).stddev[0]
    assert spread > 5, f"the screenshot is blank (grey-level spread {spread:.1f})"
