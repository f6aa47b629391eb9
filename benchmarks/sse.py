"""SSE fan-out and latency on one real gevent server (``tradeloop serve`` subprocess).

    python -m benchmarks.sse [--streams 1000] [--rounds 5] [--rate 200] [--seconds 5] [--db sqlite|mariadb]

1. K concurrent streams of one user (gevent clients in this process); one event written
   through the API reaches all K: p50/p99 delivery latency from the POST being sent.
2. Commit-to-client: a writer in this process commits notes (row + event) at ``--rate``/s
   for ``--seconds`` while 10 streams follow; latency = client receive time - the time the
   writer's commit returned (same host clock).
Baseline in the same run: the raw round-trip of the trivial ``POST /api/notes/echo``.
Prints figures, asserts nothing.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

from benchmarks._server import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
NOTES = "tests.plugins.notes.plugin"


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")


class Stream:
    """A minimal EventSource: reads ``data:`` lines, records (receive time, envelope)."""

    def __init__(self, port, token, path="/sse/notes"):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                           f"Authorization: Bearer {token}\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        self.ready = gevent.event.Event()
        self.events: list[tuple[float, dict]] = []
        self.greenlet = None

    def run(self):
        f = self.file
        while True:
            line = f.readline()
            if not line:
                return
            if line.startswith(b"retry:"):
                self.ready.set()
            elif line.startswith(b"data: "):
                self.events.append((time.time(), json.loads(line[6:])))

    def close(self):
        if self.greenlet is not None:
            self.greenlet.kill()
        for closeable in (self.file, self.sock):
            try:
                closeable.close()  # (the makefile() object keeps the fd open otherwise)
            except OSError:
                pass


def post(port, token, path="/api/notes", body=None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=json.dumps(body or {"title": "bench"}),
              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--db", choices=["sqlite", "mariadb"], default="mariadb",
                    help="mariadb = production stack (MariaDB + Redis wake-ups); sqlite = embedded")
    args = ap.parse_args(argv)

    from app import auth, create_app
    from app.migrate import upgrade
    import sqlalchemy as sa
    tmp = tempfile.mkdtemp(prefix="tl_ssebench_")
    redis_url = None
    if args.db == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
        cleanup_db = lambda: None  # noqa: E731
    else:
        server = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
        name = f"tl_ssebench_{uuid.uuid4().hex[:8]}"
        eng = sa.create_engine(server + "/test")
        with eng.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        url = f"{server}/{name}"
        redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

        def cleanup_db():
            with eng.begin() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    app = create_app({"DATABASE_URL": url, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": None,
                      "TRADELOOP_PLUGINS": [NOTES], "SECRET_KEY": "bench"})
    ext = app.extensions["tradeloop"]
    upgrade(ext, echo=None)
    with ext.db.transaction() as c:
        user, token = auth.create_user(c, "bench")
    uid = user.id

    port = free_port()
    # one user holds all K streams here: lift the per-user cap (docs/security.md) above K
    env = dict(os.environ, DATABASE_URL=url, TRADELOOP_PLUGINS=NOTES, PYTHONPATH=ROOT, SECRET_KEY="bench",
               SSE_HEARTBEAT_SECONDS="15", SSE_MAX_STREAMS_PER_USER=str(args.streams + 20),
               RATELIMIT_WRITES="1000000 per minute")
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "tradeloop"), "serve", "--port", str(port),
                             "--no-demo", "--no-migrate", "--no-workers"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    streams = []
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        # baseline: trivial request round trip
        rtts = []
        for _ in range(50):
            t = time.perf_counter()
            post(port, token, "/api/notes/echo", {})
            rtts.append(time.perf_counter() - t)
        print(f"SSE benchmark: one gevent server, db={args.db}{' + redis' if redis_url else ''}")
        print(f"  baseline POST /api/notes/echo round trip: p50 {pct(rtts, 50) * 1000:.1f} ms, "
              f"p99 {pct(rtts, 99) * 1000:.1f} ms")

        # 1. fan-out to K streams
        t_open = time.perf_counter()
        for _ in range(args.streams):
            s = Stream(port, token)
            streams.append(s)
            s.greenlet = gevent.spawn(s.run)
        ok = all(s.ready.wait(60) for s in streams)
        print(f"  opened {args.streams} streams in {time.perf_counter() - t_open:.2f} s (all ready: {ok})")
        lat = []
        for r in range(args.rounds):
            before = [len(s.events) for s in streams]
            t0 = time.time()
            post(port, token, body={"title": f"fanout {r}"})
            deadline = time.time() + 30
            while any(len(s.events) <= b for s, b in zip(streams, before)) and time.time() < deadline:
                gevent.sleep(0.005)
            got = [s.events[b][0] - t0 for s, b in zip(streams, before) if len(s.events) > b]
            lat += got
            print(f"    round {r + 1}: {len(got)}/{len(streams)} streams got the event; "
                  f"max {max(got) * 1000:.0f} ms")
        print(f"  fan-out of one event to {args.streams} streams (from POST sent): "
              f"p50 {pct(lat, 50) * 1000:.1f} ms, p99 {pct(lat, 99) * 1000:.1f} ms   (aim p99 < 250 ms)")
        for s in streams:
            s.close()
        # one more event makes the server notice the closed streams (a dead client is only
        # seen on the next write) before the latency run starts
        post(port, token, body={"title": "flush"})
        gevent.sleep(1.0)
        post(port, token, body={"title": "flush"})
        gevent.sleep(1.0)
        from bus import outbox
        with ext.db.transaction() as c:
            head = outbox.head(c, "notes.events")
        streams = [Stream(port, token, f"/sse/notes?last_seq={head}") for _ in range(10)]
        for s in streams:
            s.greenlet = gevent.spawn(s.run)
        assert all(s.ready.wait(30) for s in streams)

        # 2. commit-to-client at a steady rate: a writer in this process commits notes
        # (row + event in one transaction) straight to the database, as another app/worker
        # process would; the server learns of them by the Redis wake-up (production stack) or
        # its poll (embedded stack, SSE_POLL_SECONDS).
        from tests.plugins.notes.plugin import create_note
        for s in streams:
            s.events.clear()
        n = int(args.rate * args.seconds)
        interval = 1.0 / args.rate
        committed: dict[str, float] = {}

        def write(i):
            title = f"rate {i}"
            with ext.db.transaction() as c:
                create_note(c, uid, {"title": title})
            committed[title] = time.time()
        t_start = time.time()
        writers = []
        for i in range(n):
            gevent.sleep(max(0.0, t_start + i * interval - time.time()))
            writers.append(gevent.spawn(write, i))
        gevent.joinall(writers, timeout=60)
        achieved = n / (time.time() - t_start)
        deadline = time.time() + 30
        while any(len(s.events) < n for s in streams) and time.time() < deadline:
            gevent.sleep(0.05)
        c2c = [at - committed[e["payload"]["title"]] for s in streams for at, e in s.events
               if e["payload"]["title"] in committed]
        got = min(len(s.events) for s in streams)
        print(f"  commit-to-client at {achieved:.0f} events/s ({n} events x {len(streams)} streams, "
              f"min received {got}): p50 {pct(c2c, 50) * 1000:.1f} ms, p99 {pct(c2c, 99) * 1000:.1f} ms "
              f"(aim p99 < 100 ms)")
    finally:
        for s in streams:
            s.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        cleanup_db()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
