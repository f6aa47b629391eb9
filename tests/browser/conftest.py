"""Browser fixtures: a real ``tradeloop serve`` process on a SQLite file (so a restart keeps
its data) and Debian's Chromium driven by Playwright.

No browser is downloaded: Playwright launches /usr/bin/chromium (``CHROMIUM`` overrides it).
With CI=true a missing Chromium or Playwright fails the run; elsewhere the tests skip.
Screenshots go to ``artifacts/screenshots/`` under the repository (kept as test artifacts).
"""
from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import ROOT, free_port, missing, wait_port

TRADELOOP = os.path.join(os.path.dirname(sys.executable), "tradeloop")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SHOTS = os.path.join(ROOT, "artifacts", "screenshots")


def enabled_plugins() -> list[str]:
    plugins = ["tradelog", "riskgraph", "breakers"]
    try:
        importlib.import_module("plugins.mlloop.plugin")
        plugins.append("mlloop")
    except Exception:  # mlloop not loadable here: the console hides its section
        pass
    return plugins


class Server:
    """``tradeloop serve --demo`` on a fixed port; stop() and start() again keep the data."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.port = free_port()
        self.db_url = f"sqlite:///{workdir}/console.db"
        self.plugins = enabled_plugins()
        self.proc = None
        self.demo_token = None
        self.env = dict(os.environ)
        self.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        self.env.pop("REDIS_URL", None)
        self.env.update(DATABASE_URL=self.db_url, TRADELOOP_PLUGINS=",".join(self.plugins), PYTHONPATH=ROOT,
                        SECRET_KEY="browser-tests", SSE_RETRY_MS="500", SSE_HEARTBEAT_SECONDS="2",
                        TRADELOOP_DEMO_ML="1",  # the suite turns it off elsewhere (tests/conftest.py)
                        DEMO_ML_IDEAS_PER_DAY="150")  # the demo's ML history, built in the background
        self.engine = sa.create_engine(self.db_url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path = os.path.join(self.workdir, f"serve-{time.time():.0f}.log")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([TRADELOOP, "serve", "--port", str(self.port), "--demo"], env=self.env,
                                     cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, 60)
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            m = re.search(r"demo user: demo\s+token: (\S+)", f.read())
        self.demo_token = m.group(1) if m else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def user(self, admin: bool = False) -> tuple[int, str]:
        """A fresh user through the CLI (``tradeloop users create``): (id, token)."""
        name = f"b_{uuid.uuid4().hex[:10]}"
        out = subprocess.run([TRADELOOP, "users", "create", name] + (["--admin"] if admin else []), env=self.env,
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
        token = out.stdout.strip().splitlines()[-1]
        with self.engine.connect() as c:
            uid = c.execute(sa.text("SELECT id FROM users WHERE name = :n"), {"n": name}).scalar_one()
        return uid, token

    def seqs(self, user_id: int, stream: str) -> list[int]:
        """The user's positions on a stream, straight from the outbox: what a client must see."""
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(sa.text(
                "SELECT seq FROM bus_outbox WHERE stream = :s AND user_id = :u ORDER BY seq"), {"s": stream, "u": user_id})]


@pytest.fixture(scope="module")
def server():
    workdir = tempfile.mkdtemp(prefix="tl_browser_")
    s = Server(workdir)
    s.start()
    yield s
    s.stop()
    s.engine.dispose()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing("Playwright", str(exc))
    if not os.path.exists(CHROMIUM):
        missing("Chromium", f"no browser at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shot():
    os.makedirs(SHOTS, exist_ok=True)

    def take(page, name: str) -> str:
        path = os.path.join(SHOTS, f"{name}.png")
        page.screenshot(path=path, full_page=True)
        return path
    return take
