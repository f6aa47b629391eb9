"""Benchmark: what the breakers' checks add to an order execution.

Run as ``python -m benchmarks.breakers``. In one run, interleaved so both see the same machine:

  1. The hook in a transaction (SQLite file, and MariaDB when ``BENCH_MARIADB_URL`` or the
     test default ``mysql+pymysql://root@127.0.0.1:3306`` is reachable): a transaction that
     writes an execution-sized row, with ``check_order_allowed`` (all five breakers configured,
     order-rate limit high enough never to refuse: the slowest allowing path, with the row lock,
     the window count and the log insert) vs the same transaction without it.
  2. Over HTTP (when the tradelog plugin is installed): tradelog's ``POST /api/orders/{id}/execute``
     on two real gevent servers (``tradeloop serve``), one with ``tradelog,breakers`` and one
     with ``tradelog`` only, each on its own SQLite file; sequential requests, latency per execute.

Prints p50/p99 and the added time; asserts nothing about timings. Bounded: N_HOOK transactions
per variant, N_HTTP executes per server.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal

import sqlalchemy as sa

N_HOOK = int(os.environ.get("BENCH_N_HOOK", "2000"))
N_HTTP = int(os.environ.get("BENCH_N_HTTP", "300"))
MARIADB = os.environ.get("BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
LIMITS = {"daily_loss_limit": {"limit": "1000000"},
          "max_drawdown": {"limit": "0.99", "capital": "1000000"},
          "order_rate": {"limit": "1000000"},
          "slippage_anomaly": {"limit": "1000"},
          "model_confidence": {"limit": "0"}}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(title, with_, without):
    w50, w99 = pct(with_, 50) * 1e3, pct(with_, 99) * 1e3
    o50, o99 = pct(without, 50) * 1e3, pct(without, 99) * 1e3
    print(f"{title}")
    print(f"  with breakers     p50 {w50:8.3f} ms   p99 {w99:8.3f} ms   (n={len(with_)})")
    print(f"  without breakers  p50 {o50:8.3f} ms   p99 {o99:8.3f} ms   (n={len(without)})")
    print(f"  added             p50 {w50 - o50:+8.3f} ms   p99 {w99 - o99:+8.3f} ms   "
          f"ratio p50 {w50 / o50:5.2f}x")


# -- 1. the hook inside a transaction -----------------------------------------------------------
def bench_hook(url: str, label: str) -> None:
    from app import auth, create_app
    from app.migrate import upgrade
    from plugins.breakers import service

    app = create_app({"DATABASE_URL": url, "TRADELOOP_PLUGINS": ["breakers"], "SECRET_KEY": "bench",
                      "REDIS_URL": None, "KAFKA_BOOTSTRAP_SERVERS": None})
    ext = app.extensions["tradeloop"]
    upgrade(ext, echo=None)
    with ext.db.transaction() as conn:
        user, _ = auth.create_user(conn, f"bench_{uuid.uuid4().hex[:8]}")
    with ext.db.transaction() as conn:
        for name, body in LIMITS.items():
            service.set_config(conn, user.id, name, {k: Decimal(v) for k, v in body.items()},
                               actor="bench", admin=False)
    # The stand-in for the execute's own write: a row in a table of the host (the outbox).
    from bus import outbox

    def execute(check: bool):
        order = {"order_id": str(uuid.uuid4()), "symbol": "XYZ", "legs": [], "limit_price": None,
                 "reduces_position": False, "position_id": None}
        t0 = time.perf_counter()
        with ext.db.transaction() as conn:
            if check:
                assert ext.check_order_allowed(conn, user.id, order) == []
            outbox.emit(conn, "bench.events", "OrderFilled", aggregate_type="order", aggregate_id=order["order_id"],
                        aggregate_version=1, payload={"order_id": order["order_id"]}, user_id=user.id)
        return time.perf_counter() - t0

    for _ in range(50):
        execute(True), execute(False)
    with_, without = [], []
    for _ in range(N_HOOK):
        with_.append(execute(True))
        without.append(execute(False))
    report(f"[hook] check_order_allowed in the execute transaction, {label}", with_, without)
    ext.db.dispose()


# -- 2. tradelog's execute over HTTP --------------------------------------------------------------
def bench_http() -> None:
    try:
        import plugins.tradelog.plugin  # noqa: F401
    except ImportError:
        print("[http] tradelog plugin not installed: skipped")
        return
    import requests
    tmp = tempfile.mkdtemp(prefix="tl_bench_brk_")
    servers = {}
    try:
        for label, plugins in (("with", "tradelog,breakers"), ("without", "tradelog")):
            servers[label] = _start(tmp, label, plugins)
        tokens = {label: _token(s) for label, s in servers.items()}
        s_with = requests.Session()
        s_with.headers["Authorization"] = f"Bearer {tokens['with']}"
        for name, body in LIMITS.items():
            r = s_with.put(f"{servers['with']['base']}/api/breakers/config/{name}", json=body)
            r.raise_for_status()
        sessions = {"with": s_with, "without": requests.Session()}
        sessions["without"].headers["Authorization"] = f"Bearer {tokens['without']}"

        def one(label):
            base, s = servers[label]["base"], sessions[label]
            r = s.post(f"{base}/api/orders", json={"position_template": {"symbol": "XYZ", "legs": [
                {"instrument_type": "stock", "quantity": 1}]}, "limit_price": "100.00"})
            r.raise_for_status()
            t0 = time.perf_counter()
            r = s.post(f"{base}/api/orders/{r.json()['id']}/execute", json={})
            dt_ = time.perf_counter() - t0
            assert r.status_code == 201, r.text
            return dt_

        for _ in range(20):
            one("with"), one("without")
        with_, without = [], []
        for _ in range(N_HTTP):
            with_.append(one("with"))
            without.append(one("without"))
        report("[http] POST /api/orders/{id}/execute on a gevent server (SQLite), sequential", with_, without)
    finally:
        for s in servers.values():
            s["proc"].terminate()
            try:
                s["proc"].wait(10)
            except subprocess.TimeoutExpired:
                s["proc"].kill()


def _start(tmp, label, plugins):
    import socket
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    db = f"sqlite:///{tmp}/{label}.db"
    env = {**os.environ, "DATABASE_URL": db, "TRADELOOP_PLUGINS": plugins, "SECRET_KEY": "bench",
           "RATELIMIT_WRITES": "100000000 per minute"}  # one user writes fast here (docs/security.md)
    env.pop("REDIS_URL", None)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    exe = os.path.join(os.path.dirname(sys.executable), "tradeloop")
    proc = subprocess.Popen([exe, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{label}.log"), "wb"))
    import socket as s2
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with s2.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"server {label} did not start")
    return {"proc": proc, "base": f"http://127.0.0.1:{port}", "db": db, "env": env, "exe": exe}


def _token(server) -> str:
    out = subprocess.run([server["exe"], "users", "create", f"bench_{uuid.uuid4().hex[:8]}"], env=server["env"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def main():
    tmp = tempfile.mkdtemp(prefix="tl_bench_hook_")
    bench_hook(f"sqlite:///{tmp}/hook.db", "SQLite file")
    try:
        eng = sa.create_engine(MARIADB + "/test")
        name = f"tl_bench_{os.getpid()}"
        with eng.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    except Exception as exc:
        print(f"[hook] MariaDB not reachable ({str(exc)[:80]}): skipped")
    else:
        try:
            bench_hook(f"{MARIADB}/{name}", "MariaDB")
        finally:
            with eng.begin() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            eng.dispose()
    bench_http()


if __name__ == "__main__":
    main()
