"""HTTP throughput of the trade log: create a position + record its fill, each request with an
Idempotency-Key and an event written in its transaction, against the same server's trivial
JSON endpoint.

Run as ``python -m benchmarks.tradelog [--stack embedded|production] [--seconds S]
[--clients N]``. It starts ``tradeloop serve`` (the gevent WSGI server) in a subprocess on
127.0.0.1 with the tradelog plugin and the tests' ``notes`` plugin (whose ``POST
/api/notes/echo`` returns ``{"ok": true}`` after authentication: the trivial endpoint), then
drives it with N clients (threads; a connection per request) for a bounded time per phase:

  1. trivial: POST /api/notes/echo (no Idempotency-Key);
  2. trivial + key: the same with an Idempotency-Key (the host's key handling alone);
  3. tradelog: POST /api/positions (one option leg) then POST /api/positions/{id}/fills,
     both with Idempotency-Key — two requests, two events per operation.

Prints requests/s of each phase and the ratios; asserts nothing about timings.
``embedded`` = SQLite file + in-process cache (the no-setup default); ``production`` =
MariaDB + Redis on this machine (TEST_MARIADB_URL, TEST_REDIS_URL as in the tests).
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from benchmarks._server import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = "tradelog,tests.plugins.notes.plugin"
TRADELOOP = os.path.join(os.path.dirname(sys.executable), "tradeloop")  # the console script
def _expiry() -> str:
    """A trading day about 30 days out (the trade log refuses expiries on other days)."""
    from optionsmath import markettime
    day = dt.date.today() + dt.timedelta(days=30)
    return (day if markettime.is_trading_day(day) else markettime.next_trading_day(day)).isoformat()


EXPIRY = _expiry()


class Stack:
    def __init__(self, kind: str):
        self.kind = kind
        self.tmp = tempfile.mkdtemp(prefix="tl_bench_")
        self.env = dict(os.environ, TRADELOOP_PLUGINS=PLUGINS, SECRET_KEY="bench", PYTHONPATH=ROOT,
                        RATELIMIT_WRITES="100000000 per minute")  # one user writes fast here
        self.env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        self.db_name = None
        if kind == "embedded":
            self.env["DATABASE_URL"] = f"sqlite:///{self.tmp}/bench.db"
            self.env.pop("REDIS_URL", None)
        else:
            import sqlalchemy as sa
            base = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
            self.db_name = f"tl_bench_{os.getpid()}"
            self.admin = sa.create_engine(base + "/test")
            with self.admin.begin() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.db_name}")
                c.exec_driver_sql(f"CREATE DATABASE {self.db_name} CHARACTER SET utf8mb4")
            self.env["DATABASE_URL"] = f"{base}/{self.db_name}"
            self.env["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

    def cli(self, *args) -> str:
        out = subprocess.run([TRADELOOP, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.db_name:
            with self.admin.begin() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.db_name}")


class Client:
    """One connection per request. (On a kept-alive connection every response waits ~40 ms:
    the server writes the headers and the body in two segments without TCP_NODELAY, and
    Nagle holds the body until the client's delayed ACK — a host/server setting, reported.)"""

    def __init__(self, port: int, token: str):
        self.port = port
        self.auth = f"Bearer {token}"

    def call(self, method: str, path: str, body=None, key: bool = False):
        headers = {"Authorization": self.auth, "Content-Type": "application/json", "Connection": "close"}
        if key:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path} -> {resp.status} {data[:300]!r}")
        return json.loads(data) if data else None


def trivial(c: Client, key: bool) -> int:
    c.call("POST", "/api/notes/echo", {}, key=key)
    return 1


def trade(c: Client) -> int:
    p = c.call("POST", "/api/positions", {"symbol": "SPX", "underlying": "I:SPX", "legs": [
        {"instrument_type": "option", "expiry": EXPIRY, "strike": "6100", "right": "call", "quantity": 1}]}, key=True)
    c.call("POST", f"/api/positions/{p['id']}/fills", {"leg_id": p["legs"][0]["id"], "price": "24.50", "quantity": 1,
                                                       "fees": "0.65", "occurred_at": "2025-02-05T10:30:00Z"}, key=True)
    return 2


def phase(port: int, token: str, clients: int, seconds: float, work) -> tuple[int, float]:
    """Run ``work(client)`` in a loop on each of ``clients`` threads for ``seconds``;
    returns (requests, elapsed)."""
    counts = [0] * clients
    errors: list[BaseException] = []
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def run(i):
        c = Client(port, token)
        work(c)  # warm the connection
        start_gate.wait()
        try:
            while time.perf_counter() < stop_at[0]:
                counts[i] += work(c)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds + 1e9  # provisional, set for real once all are warm
    start_gate.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts), elapsed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", choices=["embedded", "production"], default="embedded")
    ap.add_argument("--seconds", type=float, default=5.0, help="per phase (bounded: at most 30)")
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args(argv)
    seconds = min(args.seconds, 30.0)
    stack = Stack(args.stack)
    server = None
    try:
        stack.cli("db", "upgrade")
        token = stack.cli("users", "create", f"bench_{uuid.uuid4().hex[:8]}").splitlines()[-1]
        port = free_port()
        server = subprocess.Popen([TRADELOOP, "serve", "--port", str(port), "--no-migrate"], env=stack.env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(port)
        print(f"tradelog HTTP benchmark: stack={args.stack} clients={args.clients} seconds/phase={seconds:g} "
              f"(gevent WSGIServer, one process)")
        results = {}
        for name, work in [("trivial", lambda c: trivial(c, False)),
                           ("trivial + Idempotency-Key", lambda c: trivial(c, True)),
                           ("create position + record fill", trade)]:
            n, elapsed = phase(port, token, args.clients, seconds, work)
            results[name] = n / elapsed
            print(f"  {name:32s} {n:7d} requests in {elapsed:5.2f} s = {n / elapsed:8.1f} req/s")
        ops = results["create position + record fill"] / 2
        base, base_key = results["trivial"], results["trivial + Idempotency-Key"]
        print(f"  -> {ops:.1f} positions created and filled per second (2 requests, 2 events each)")
        print(f"  ratio tradelog req/s : trivial req/s                 = {results['create position + record fill'] / base:.0%}"
              " (aim: >= 40%)")
        print(f"  ratio tradelog req/s : trivial+Idempotency-Key req/s = "
              f"{results['create position + record fill'] / base_key:.0%}")
        # Check the work was real: the last position has its two events.
        c = Client(port, token)
        positions = c.call("GET", "/api/positions?page_size=1")
        events = c.call("GET", f"/api/positions/{positions[0]['id']}/events")
        print(f"  check: last position's events = {[e['type'] for e in events]}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        stack.close()


if __name__ == "__main__":
    main()
