"""Helpers for benchmarks that drive a real `tradeloop serve` (gevent) subprocess."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRADELOOP = os.path.join(os.path.dirname(sys.executable), "tradeloop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"server did not listen on {port}")


def stack_env(stack: str, plugins: str) -> tuple[dict, callable]:
    """Environment for a server on the embedded (SQLite) or production (MariaDB + Redis)
    stack, and a clean-up function."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS",)}
    # One user writes thousands per second here: the per-user write limit stays on (its cost is
    # part of what is measured) but far above the load (docs/security.md).
    env.update(TRADELOOP_PLUGINS=plugins, PYTHONPATH=ROOT, SECRET_KEY="bench",
               RATELIMIT_WRITES="100000000 per minute")
    if stack == "embedded":
        d = tempfile.mkdtemp(prefix="tl_bench_")
        env["DATABASE_URL"] = f"sqlite:///{d}/bench.db"
        env.pop("REDIS_URL", None)
        return env, lambda: None
    import sqlalchemy as sa
    name = f"tl_bench_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/test")
    with eng.begin() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    env["DATABASE_URL"] = f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    env["REDIS_URL"] = "redis://127.0.0.1:6379/14"

    def drop():
        with eng.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    return env, drop


class Server:
    def __init__(self, env: dict, port: int | None = None):
        self.env, self.port = env, port or free_port()
        self.proc = None

    def cli(self, *args) -> str:
        return subprocess.run([TRADELOOP, *args], env=self.env, cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()

    def start(self) -> "Server":
        self.cli("db", "upgrade")
        # The server's log (an access-log line per request) goes to a file: a pipe nobody reads
        # fills up and then blocks the server on its next log line.
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([TRADELOOP, "serve", "--port", str(self.port), "--no-migrate"],
                                     env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.log.seek(0)
        raise RuntimeError("server did not start: " + self.log.read().decode()[-2000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]
