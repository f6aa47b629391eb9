"""Idempotent POST (create + durable Idempotency-Key record + event) against a trivial JSON
endpoint on the same gevent server, same run: 50 concurrent keep-alive clients, bounded time.

    python -m benchmarks.http_write [--stack embedded|production] [--clients 50] [--seconds 8]

Prints req/s of each, their ratio, and p50/p99 latency. Never asserts: figures only.
Aim (issue 2): the idempotent create at >= 40% of the trivial endpoint's rate, p99 < 50 ms.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
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
            rate, lat, errors = phase(server.port, token, args.clients, args.seconds, fn)
            results[name] = rate
            print(f"{name:40s} {rate:8.1f} req/s   p50 {percentile(lat, 50) * 1000:7.2f} ms   "
                  f"p99 {percentile(lat, 99) * 1000:7.2f} ms   errors {errors}")
        base = results["trivial JSON endpoint"]
        print(f"\nstack: {args.stack}; clients: {args.clients}; {args.seconds:.0f} s per phase")
        print(f"ratio idempotent create / trivial: {results['idempotent create (row + key + event)'] / base:.2f} "
              f"(aim >= 0.40)")
        print(f"ratio trivial + key / trivial:     {results['trivial + Idempotency-Key'] / base:.2f}")
    finally:
        server.stop()
        cleanup()


if __name__ == "__main__":
    main()
