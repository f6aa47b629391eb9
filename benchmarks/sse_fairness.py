"""SSE fairness: does one user replaying a long history starve the others?

    python -m benchmarks.sse_fairness [--events 20000] [--streams 100] [--probes 200] [--stack embedded|production]

The issue's drill: user A opens ``--streams`` concurrent ``/sse/notes?last_seq=0`` (each would
replay A's whole history); meanwhile user B calls GET /api/auth/me ``--probes`` times, one at a
time. Printed: how many of A's streams were accepted (the rest 429), how many events they were
sent, and B's p50/p99 during the replay as a ratio of B's p50/p99 with the server idle, in the
same run. Prints figures, asserts nothing.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

from benchmarks._server import ROOT, TRADELOOP, Server, percentile, stack_env, wait_port  # noqa: E402

NOTES = "tests.plugins.notes.plugin"


PROBE = """
import http.client, json, sys, time
port, token, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
lat = []
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(n):
    t = time.perf_counter()
    c.request("GET", "/api/auth/me", headers={"Authorization": "Bearer " + token})
    c.getresponse().read()
    lat.append(time.perf_counter() - t)
print(json.dumps(lat))
"""


def probe(port, token, n):
    """B's latencies, measured from a process of its own (this one is busy reading A's streams)."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(port), token, str(n)], capture_output=True, text=True,
                         check=True, timeout=600)
    return json.loads(out.stdout)


def stream(port, token, counts, deadline):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/sse/notes?last_seq=0", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    counts["status"][r.status] = counts["status"].get(r.status, 0) + 1
    if r.status != 200:
        r.read()
        c.close()
        return
    while time.monotonic() < deadline:
        line = r.fp.readline()
        if not line:
            break
        if line.startswith(b"id: "):
            counts["events"] += 1
    c.close()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0, help="longest the replay phase runs")
    ap.add_argument("--stack", choices=["embedded", "production"], default="embedded")
    args = ap.parse_args(argv)
    env, cleanup = stack_env(args.stack, NOTES)
    env["SSE_HEARTBEAT_SECONDS"] = "5"
    server = Server(env)
    log = tempfile.NamedTemporaryFile(prefix="sse_fairness_", suffix=".log", delete=False)
    try:
        server.cli("db", "upgrade")
        server.proc = subprocess.Popen([TRADELOOP, "serve", "--port", str(server.port), "--no-migrate", "--no-workers"],
                                       env=env, cwd=ROOT, stdout=log, stderr=log)
        wait_port(server.port)
        token_a = server.cli("users", "create", f"a_{uuid.uuid4().hex[:6]}")
        token_b = server.cli("users", "create", f"b_{uuid.uuid4().hex[:6]}")
        # A's history, written straight to the outbox in big transactions (fast set-up)
        from app import create_app
        from bus import outbox
        app = create_app({"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env.get("REDIS_URL"),
                          "TRADELOOP_PLUGINS": [NOTES], "SECRET_KEY": "bench"})
        db = app.extensions["tradeloop"].db
        from app.auth import user_by_token
        with db.read() as c:
            uid_a = user_by_token(c, token_a).id
        for start in range(0, args.events, 1000):
            with db.transaction() as c:
                outbox.emit_many(c, "notes.events", [dict(
                    type="NoteCreated", aggregate_type="note", aggregate_id=str(uuid.uuid4()), aggregate_version=1,
                    payload={"title": f"n{start + i}", "pad": "x" * 200}, user_id=uid_a)
                    for i in range(min(1000, args.events - start))])
        idle = probe(server.port, token_b, args.probes)
        counts = {"status": {}, "events": 0}
        deadline = time.monotonic() + args.seconds
        greenlets = [gevent.spawn(stream, server.port, token_a, counts, deadline) for _ in range(args.streams)]
        gevent.sleep(0.5)
        busy = probe(server.port, token_b, args.probes)  # cooperative (gevent subprocess)
        gevent.joinall(greenlets, timeout=args.seconds + 10)
        gevent.killall(greenlets)
        print(f"stack {args.stack}: user A {args.events} events, {args.streams} concurrent replays from 0")
        print(f"  A's streams by status: {dict(sorted(counts['status'].items()))}; events sent {counts['events']}")
        i50, i99, b50, b99 = (percentile(idle, 50), percentile(idle, 99), percentile(busy, 50), percentile(busy, 99))
        print(f"  B GET /api/auth/me idle:   p50 {i50 * 1000:7.1f} ms  p99 {i99 * 1000:7.1f} ms")
        print(f"  B GET /api/auth/me replay: p50 {b50 * 1000:7.1f} ms  p99 {b99 * 1000:7.1f} ms  "
              f"(x{b50 / i50:.1f} / x{b99 / i99:.1f} of idle)")
    finally:
        server.stop()
        cleanup()
        print(f"  server log: {log.name}")


if __name__ == "__main__":
    main()
