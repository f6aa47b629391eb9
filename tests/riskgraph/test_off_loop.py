"""Issue 15 item 5: a large analysis runs off the gevent loop, so /health stays fast.

A real ``tradeloop serve`` (gevent) on its own SQLite database; another process posts large
analyses (40 legs x 5,001 prices x 21 dates: 4.2M points, seven times the service's
off-loop threshold, about a second of work each, with a modest 2 MB answer so that writing
it does not dominate) while this test polls /health. Bound (the issue's): p99 of /health under 50 ms while the analyses run — on top of
twice the p99 of the same /health loop measured just before without analyses, so that a
machine loaded by other work (CPU starvation is no event-loop stall) does not fail it.
Computed on the loop (``RISKGRAPH_OFF_LOOP_WORK=999999999``) the same run measured a p99 of
0.7-1.3 s against a 30 ms baseline; off the loop 72 ms against 113 ms, on a machine at load
average 13.
"""
from __future__ import annotations

import os
import subprocess
import sys
import json
import time

import requests

from tests.conftest import ROOT, free_port, make_user, wait_port

LEGS = [
    {"instrument_type": "option", "right": "put", "strike": "5900", "expiry": "2031-02-21", "quantity": 1, "iv": 0.19},
    {"instrument_type": "option", "right": "put", "strike": "6000", "expiry": "2031-02-21", "quantity": -1, "iv": 0.17},
    {"instrument_type": "option", "right": "call", "strike": "6200", "expiry": "2031-03-21", "quantity": -1, "iv": 0.14},
    {"instrument_type": "option", "right": "call", "strike": "6300", "expiry": "2031-03-21", "quantity": 1, "iv": 0.13},
]
BODY = {"spot": 6100, "r": 0.04, "valuation_date": "2031-01-07", "points": 5001,
        "days_forward": list(range(1, 21)), "legs": LEGS * 10}


def test_health_stays_fast_while_large_analyses_run(tmp_path):
    from app import create_app
    from app.migrate import upgrade
    url = f"sqlite:///{tmp_path}/offloop.db"
    app = create_app({"DATABASE_URL": url, "TRADELOOP_PLUGINS": ["riskgraph"], "SECRET_KEY": "test-secret",
                      "KAFKA_BOOTSTRAP_SERVERS": None, "REDIS_URL": None})
    upgrade(app.extensions["tradeloop"], echo=None)
    token = make_user(app).token
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env.update(DATABASE_URL=url, TRADELOOP_PLUGINS="riskgraph", SECRET_KEY="test-secret")
    tradeloop = os.path.join(os.path.dirname(sys.executable), "tradeloop")
    proc = subprocess.Popen([tradeloop, "serve", "--port", str(port), "--no-migrate", "--no-workers",
                             "--no-jobs"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        h = {"Authorization": f"Bearer {token}"}
        # warm up: the worker process starts (spawn) and imports numpy/scipy once
        first = requests.post(f"{base}/api/risk-graph/analyze", json=BODY, headers=h, timeout=120)
        assert first.status_code == 200, first.text[:300]
        out = first.json()
        assert len(out["grid"]) == 5001 and len(out["strategies"][0]["curves"]) == 21
        assert len(out["strategies"][0]["curves"][20]["pnl"]) == 5001

        session = requests.Session()

        def p99_of_health(until):
            latencies = []
            while until():
                t0 = time.perf_counter()
                assert session.get(f"{base}/health", timeout=10).status_code == 200
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.01)
            latencies.sort()
            return latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], len(latencies)

        quiet_until = time.monotonic() + 2.0
        baseline, _ = p99_of_health(lambda: time.monotonic() < quiet_until)
        # the large requests come from another process, so this one's /health timings
        # never wait for a GIL held while it receives ~12 MB of curves
        code = ("import json, sys, requests\n"
                "body, h, url = json.loads(sys.argv[1]), {'Authorization': sys.argv[2]}, sys.argv[3]\n"
                "print([requests.post(url, json=body, headers=h, timeout=120).status_code for _ in range(3)])")
        heavy = subprocess.Popen([sys.executable, "-c", code, json.dumps(BODY), h["Authorization"],
                                  f"{base}/api/risk-graph/analyze"], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        p99, samples = p99_of_health(lambda: heavy.poll() is None and time.monotonic() < deadline)
        out, _ = heavy.communicate(timeout=60)
        assert out.strip() == "[200, 200, 200]"
        assert samples >= 20, "the analyses finished before /health was sampled"
        print(f"/health p99 {p99 * 1e3:.1f} ms during the analyses ({samples} requests), "
              f"{baseline * 1e3:.1f} ms before")
        assert p99 < 0.050 + 2 * baseline, f"/health p99 {p99 * 1e3:.1f} ms (baseline {baseline * 1e3:.1f} ms)"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
