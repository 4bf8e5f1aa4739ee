"""A real ``streamlit run`` server of the dashboard, loaded by headless Chromium (Debian's package).

Chromium's one-shot ``--screenshot``/``--dump-dom`` modes capture at the page's load event, before
Streamlit's websocket has delivered anything (the page is still blank then), so the test drives the
same headless Chromium through the DevTools protocol instead: it opens every main page, waits until it
has drawn, saves a 1400 px wide screenshot and reads the rendered DOM, and records every request the
browser makes (an offline plant must not see one leave the machine). The websocket client is the
``websockets`` package, which Streamlit's server already depends on.

``STEEL_DOCS_SCREENSHOTS=1`` also copies the screenshots to ``docs/screenshots/`` (the README shows
them), so the pictures there are the ones this test took.
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
from urllib.parse import urlsplit

import pytest
from PIL import Image, ImageStat
from websockets.asyncio.client import connect

from dashboard.cli import streamlit_command
from datasets.settings import REPO_ROOT

pytestmark = pytest.mark.browser
DOCS_SHOTS = REPO_ROOT / "docs" / "screenshots"
TOUR = (  # url path, page title, the element that shows the page has drawn its data
    ("", "Overview", "stMetricValue"),
    ("trends", "Trends", "stVegaLiteChart"),
    ("pareto", "Pareto", "stVegaLiteChart"),
    ("coil_map", "Coil map", "stVegaLiteChart"),
    ("gallery", "Gallery", "stImage"),
    ("review", "Review", "stImage"),
    ("models", "Models", "stDataFrame"),
    ("live", "Live", "stImage"),
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1400,1000",
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
    """The few DevTools protocol calls the test needs, over one page target's websocket.

    Events that arrive while waiting for a reply are kept in ``events`` (the network log).
    """

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self.conn = None
        self.next_id = 0
        self.events: list[dict] = []

    async def __aenter__(self) -> DevTools:
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
            if "method" in data:
                self.events.append(data)

    async def evaluate(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"
        ]


def _rendered(title: str, testid: str) -> str:
    """JS: true once the page shows its title and its data element, and Streamlit has stopped running."""
    return f"""(() => {{
  const h1 = [...document.querySelectorAll('h1')].some(h => h.innerText.trim() === {json.dumps(title)});
  const found = [...document.querySelectorAll('[data-testid="{testid}"]')];
  const chart = (el) => el.getAttribute('data-testid') === 'stVegaLiteChart';
  const drawn = (el) => !chart(el) || el.querySelector('canvas, svg');
  const data = found.length >= 1 && found.every(drawn);
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const skeleton = document.querySelector('[data-testid="stSkeleton"]');
  return h1 && data && !running && !skeleton;
}})()"""


async def _tour(ws_url: str, base: str, out: Path, *, timeout: float) -> tuple[dict[str, str], list[str]]:
    """Open each page of ``TOUR``; its DOM by title, and every URL the browser requested on the way."""
    doms: dict[str, str] = {}
    async with DevTools(ws_url) as dt:
        await dt.call("Network.enable")
        await dt.call("Page.enable")
        for path, title, testid in TOUR:
            await dt.call("Page.navigate", url=f"{base}/{path}")
            deadline = time.monotonic() + timeout
            while not await dt.evaluate(_rendered(title, testid)):
                if time.monotonic() > deadline:
                    text = await dt.evaluate("document.body ? document.body.innerText : ''")
                    raise TimeoutError(f"{title} did not render in {timeout:.0f} s; page text: {text!r:.500}")
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.5)  # let the charts and images finish drawing
            shot = await dt.call("Page.captureScreenshot", format="png")
            (out / f"{path or 'overview'}.png").write_bytes(base64.b64decode(shot["data"]))
            doms[title] = str(await dt.evaluate("document.documentElement.outerHTML"))
        await asyncio.sleep(1.0)  # late requests (favicon, fonts) of the last page
        await dt.evaluate("1")  # drains the events that came meanwhile
        return doms, dt.requested_urls()


def _server(db_url: str, port: int, config: Path) -> subprocess.Popen:
    cmd, env = streamlit_command(db_url=db_url, port=port, address="127.0.0.1", config=config)
    return subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _chromium(profile: Path) -> tuple[subprocess.Popen, str]:
    """Headless Chromium on a blank page; the process and its page's DevTools websocket URL."""
    browser = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    active = profile / "DevToolsActivePort"
    debug_port = _wait(
        lambda: active.is_file() and active.read_text().split("\n")[0].strip(), timeout=60, what="chromium"
    )

    def page_target() -> str | None:
        listing = _get(f"http://127.0.0.1:{debug_port}/json/list")
        pages = [t for t in json.loads(listing or b"[]") if t.get("type") == "page"]
        return pages[0]["webSocketDebuggerUrl"] if pages else None

    return browser, _wait(page_target, timeout=30, what="the chromium page")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI: apt-get install -y chromium)")
def test_every_main_page_renders_in_chromium_and_nothing_is_fetched_from_outside(
    seeded_url: str, tmp_path: Path, neu_images: list[Path]
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    Image.open(neu_images[0]).convert("RGB").save(live / "L1.jpg")
    config = tmp_path / "dashboard.yaml"
    config.write_text(f"live_dir: {live}\nrefresh_s: 600\n", encoding="utf-8")
    port = _free_port()
    server = _server(seeded_url, port, config)
    browser = None
    shots = tmp_path / "shots"
    shots.mkdir()
    try:
        _wait(
            lambda: server.poll() is not None or _get(f"http://127.0.0.1:{port}/_stcore/health") == b"ok",
            timeout=90,
            what="the Streamlit server",
        )
        assert server.poll() is None, server.stdout.read().decode(errors="replace")[-3000:]
        browser, ws_url = _chromium(tmp_path / "chromium-profile")
        doms, urls = asyncio.run(_tour(ws_url, f"http://127.0.0.1:{port}", shots, timeout=90))
    finally:
        if browser is not None:
            _stop(browser)
        _stop(server)

    overview = doms["Overview"]
    assert "Frames inspected" in overview and "Defects per 100 m" in overview
    for title, dom in doms.items():
        for bad in ("Traceback", "StreamlitAPIException", 'data-testid="stException"'):
            assert bad not in dom, f"{title}: {bad}"
    outside = sorted(
        {
            u
            for u in urls
            if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname != "127.0.0.1"
        }
    )
    assert urls and not outside, f"requests that leave the machine: {outside}"
    assert any(urlsplit(u).path.startswith("/media/") for u in urls)  # the favicon and images, served locally
    for png in sorted(shots.glob("*.png")):
        with Image.open(png) as im:
            assert im.width == 1400 and im.height > 600, png.name  # the viewport of the 1400x1000 window
            spread = ImageStat.Stat(im.convert("L")).stddev[0]
        assert spread > 5, f"{png.name}: the screenshot is blank (grey-level spread {spread:.1f})"
    assert len(list(shots.glob("*.png"))) == len(TOUR)
    if os.environ.get("STEEL_DOCS_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        for png in shots.glob("*.png"):
            shutil.copyfile(png, DOCS_SHOTS / png.name)
