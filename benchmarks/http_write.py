"""Idempotent POST (create + durable Idempotency-Key record + event) against a trivial JSON
endpoint on the same gevent server, same run: 50 concurrent keep-alive clients, bounded time.

    python -m benchmarks.http_write [--stack embedded|production] [--clients 50] [--seconds 8]

Prints req/s of each, their ratio, and p50/p99 latency. Never asserts: figures only.

The raw baseline (the limit): the same note row + Idempotency-Key record + outbox event
(counter bump last, then COMMIT) in one transaction, with plain prebuilt SQL through the bare
DB-API driver on the same database, from as many concurrent greenlets as there are clients
(pymysql) or from one connection (SQLite has one writer; concurrency cannot add to it).

Aims (issue 20): idempotent create >= 0.40 of trivial on SQLite, >= 0.35 on MariaDB + Redis,
p99 <= 100 ms at 50 clients on MariaDB; trivial + key >= 0.8 of trivial.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

from benchmarks._server import Server, percentile, stack_env  # noqa: E402


def phase(port, token, clients, seconds, make_request):
    latencies, errors = [], 0
    stop_at = time.perf_counter() + seconds

    def client(i):
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n = 0
        while time.perf_counter() < stop_at:
            path, body, headers = make_request(i, n)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            latencies.append(time.perf_counter() - t0)
            if resp.status >= 400:
                errors += 1
            n += 1
        conn.close()

    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(client, i) for i in range(clients)])
    elapsed = time.perf_counter() - t0
    return len(latencies) / elapsed, latencies, errors


RAW_STREAM = "rawbench.events"


def raw_baseline(database_url: str, user_id: int, clients: int, seconds: float):
    """Transactions/s of the raw write (see the module docstring), p50/p99 per transaction."""
    import datetime as dt
    import sqlalchemy as sa
    url = sa.engine.make_url(database_url)
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite:
        import sqlite3
        ph = "?"
        def connect():
            c = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            return c
        clients = 1
    else:
        import pymysql
        ph = "%s"
        def connect():
            return pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                                   password=url.password or "", database=url.database,
                                   charset="utf8mb4", ssl_disabled=True, autocommit=False)
    p = ",".join([ph] * 7)
    ins_key = (f"INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, method, path, created_at, "
               f"expires_at) VALUES ({p})")
    ins_note = f"INSERT INTO test_notes (id, user_id, title, amount, version, created_at) VALUES ({','.join([ph] * 6)})"
    upd_key = (f"UPDATE idempotency_keys SET status_code = {ph}, response_body = {ph}, response_headers = {ph} "
               f"WHERE user_id = {ph} AND idem_key = {ph}")
    if sqlite:
        bump = (f"INSERT INTO bus_streams (stream, last_seq) VALUES ({ph}, 1) ON CONFLICT(stream) "
                f"DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq")
    else:
        bump = (f"INSERT INTO bus_streams (stream, last_seq) VALUES ({ph}, LAST_INSERT_ID(1)) "
                f"ON DUPLICATE KEY UPDATE last_seq = LAST_INSERT_ID(last_seq + 1)")
    ins_event = (f"INSERT INTO bus_outbox (stream, seq, event_id, type, aggregate_type, aggregate_id, "
                 f"aggregate_version, occurred_at, recorded_at, user_id, schema_version, payload) "
                 f"VALUES ({','.join([ph] * 12)})")
    latencies = []
    stop_at = time.perf_counter() + seconds

    def worker(i):
        c = connect()
        cur = c.cursor()
        n = 0
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            stamp = now.isoformat(sep=" ", timespec="milliseconds") if sqlite else now
            later = (now + dt.timedelta(days=1))
            later = later.isoformat(sep=" ", timespec="milliseconds") if sqlite else later
            note_id, key = str(uuid.uuid4()), f"raw-{i}-{n}-{uuid.uuid4().hex[:6]}"
            body = json.dumps({"id": note_id, "title": f"n{i}-{n}", "amount": "12.5000", "version": 1})
            if sqlite:
                cur.execute("BEGIN IMMEDIATE")
            cur.execute(ins_key, (user_id, key, "f" * 64, "POST", "/api/notes", stamp, later))
            cur.execute(ins_note, (note_id, user_id, f"n{i}-{n}", "12.5000", 1, stamp))
            cur.execute(upd_key, (201, body, '{"Content-Type": "application/json"}', user_id, key))
            cur.execute(bump, (RAW_STREAM,))
            seq = cur.fetchone()[0] if sqlite else cur.lastrowid
            cur.execute(ins_event, (RAW_STREAM, seq, str(uuid.uuid4()), "NoteCreated", "note", note_id, 1,
                                    stamp, stamp, user_id, 1, json.dumps({"id": note_id, "title": f"n{i}-{n}"})))
            if sqlite:
                cur.execute("COMMIT")
            else:
                c.commit()
            latencies.append(time.perf_counter() - t0)
            n += 1
        c.close()

    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(worker, i) for i in range(clients)])
    return len(latencies) / (time.perf_counter() - t0), latencies, clients


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _user_id(database_url: str, token: str) -> int:
    import sqlalchemy as sa
    from app.auth import hash_token
    eng = sa.create_engine(database_url)
    try:
        with eng.connect() as c:
            return int(c.execute(sa.text("SELECT user_id FROM api_tokens WHERE token_hash = :h"),
                                 {"h": hash_token(token)}).scalar_one())
    finally:
        eng.dispose()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", choices=["embedded", "production"], default="embedded")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    env, cleanup = stack_env(args.stack, "tests.plugins.notes.plugin")
    server = Server(env)
    try:
        server.start()
        token = server.cli("users", "create", f"bench_{uuid.uuid4().hex[:6]}")
        trivial_body = json.dumps({"title": "x"})

        def trivial(i, n):
            return "/api/notes/echo", trivial_body, {}

        def trivial_key(i, n):
            return "/api/notes/echo", trivial_body, {"Idempotency-Key": f"e-{i}-{n}-{uuid.uuid4().hex[:6]}"}

        def create(i, n):
            return "/api/notes", json.dumps({"title": f"n{i}-{n}", "amount": "12.5"}), \
                {"Idempotency-Key": f"c-{i}-{n}-{uuid.uuid4().hex[:6]}"}

        phase(server.port, token, 4, 1.0, trivial)  # warm-up
        results = {}
        for name, fn in (("trivial JSON endpoint", trivial), ("trivial + Idempotency-Key", trivial_key),
                         ("idempotent create (row + key + event)", create)):
            cpu0 = _cpu_seconds(server.proc.pid)
            rate, lat, errors = phase(server.port, token, args.clients, args.seconds, fn)
            cpu = (_cpu_seconds(server.proc.pid) - cpu0) / max(1, len(lat))
            results[name] = rate
            print(f"{name:40s} {rate:8.1f} req/s   p50 {percentile(lat, 50) * 1000:7.2f} ms   "
                  f"p99 {percentile(lat, 99) * 1000:7.2f} ms   errors {errors}   server CPU {cpu * 1000:5.2f} ms/req")
        user_id = _user_id(env["DATABASE_URL"], token)
        raw, lat, raw_clients = raw_baseline(env["DATABASE_URL"], user_id, args.clients, args.seconds)
        print(f"{'raw SQL: row + key + event, one tx':40s} {raw:8.1f} tx/s    p50 {percentile(lat, 50) * 1000:7.2f} ms   "
              f"p99 {percentile(lat, 99) * 1000:7.2f} ms   ({raw_clients} connection{'s' if raw_clients > 1 else ''})")
        base = results["trivial JSON endpoint"]
        create = results["idempotent create (row + key + event)"]
        aim = 0.40 if args.stack == "embedded" else 0.35
        print(f"\nstack: {args.stack}; clients: {args.clients}; {args.seconds:.0f} s per phase")
        print(f"ratio idempotent create / trivial:  {create / base:.2f} (aim >= {aim:.2f})")
        print(f"ratio trivial + key / trivial:      {results['trivial + Idempotency-Key'] / base:.2f} (aim >= 0.80)")
        print(f"ratio idempotent create / raw SQL:  {create / raw:.2f}")
        print(f"ratio raw SQL / trivial:            {raw / base:.2f}")
    finally:
        server.stop()
        cleanup()


if __name__ == "__main__":
    main()
