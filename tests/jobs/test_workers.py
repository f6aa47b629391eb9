"""Drills with real worker processes: kill -9 mid-job, a stalled worker waking late, a restart
with jobs queued, the schedule on a short interval, and the web loop's latency while CPU work
runs in a job worker or in the off-loop pool — on SQLite and on MariaDB + Redis."""
from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time

import pytest
import sqlalchemy as sa

from tests.conftest import free_port
from tests.jobs.conftest import http_get


def running_with_progress(job):
    return job["state"] == "running" and job["progress"] >= 0.2


def test_kill_9_mid_job_reruns_it_once_with_one_result(job_stack, tmp_path):
    s = job_stack
    token = s.token()
    log = tmp_path / "runs.log"
    w1 = s.worker()
    job = s.submit(token, "notes.slow_retried", {"seconds": 2, "steps": 20, "log": str(log)})
    s.wait(job["id"], running_with_progress, what="running")
    os.kill(w1.pid, signal.SIGKILL)
    w1.wait(10)
    w2 = s.worker()
    done = s.wait(job["id"], lambda j: j["state"] in ("succeeded", "failed"), timeout=40, what="finished")
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 2 and done["result"]["pid"] == w2.pid and done["error"]["code"] == "worker_lost"
    lines = log.read_text().split()
    assert lines.count("start") == 2 and lines.count("end") == 1  # two runs began, one completed
    assert s.events(job["id"], "JobSucceeded") == ["JobSucceeded"] and "JobRetrying" in s.events(job["id"])
    s.stop(w2)


def test_kill_9_mid_job_with_no_attempt_left_fails_with_the_reason(job_stack):
    s = job_stack
    token = s.token()
    w1 = s.worker()
    job = s.submit(token, "notes.slow", {"seconds": 2, "steps": 20})
    s.wait(job["id"], running_with_progress, what="running")
    os.kill(w1.pid, signal.SIGKILL)
    w1.wait(10)
    w2 = s.worker()  # any live worker's tick reaps it
    done = s.wait(job["id"], lambda j: j["state"] != "running", timeout=30, what="not running")
    assert done["state"] == "failed" and done["error"]["code"] == "worker_lost"
    assert f":{w1.pid}:" in done["error"]["message"] and "attempt 1 of 1" in done["error"]["message"]
    assert done["result"] is None and done["finished_at"]
    s.stop(w2)


def test_a_worker_stopped_with_sigterm_hands_its_running_job_back(job_stack):
    """SIGTERM stops a worker at once (SIGINT would let the job finish): the unfinished run
    is released — queued again, the attempt not counted — and the next worker runs it."""
    s = job_stack
    token = s.token()
    w1 = s.worker()
    job = s.submit(token, "notes.slow", {"seconds": 2, "steps": 20})
    s.wait(job["id"], running_with_progress, what="running")
    os.kill(w1.pid, signal.SIGTERM)
    assert w1.wait(15) is not None
    back = s.job(job["id"])
    assert back["state"] == "queued" and back["attempts"] == 0 and back["message"] == "released by a stopping worker"
    w2 = s.worker()
    done = s.wait(job["id"], lambda j: j["state"] == "succeeded", timeout=30, what="succeeded")
    assert done["attempts"] == 1 and done["result"]["pid"] == w2.pid
    s.stop(w2)


def test_a_stalled_worker_waking_after_its_job_was_reclaimed_completes_nothing(job_stack, tmp_path):
    """SIGSTOP a worker mid-job past its lease: another worker reruns the job to completion;
    SIGCONT the first: its progress, heartbeat and completion are refused (lease token gone),
    so the job keeps exactly one result — the second run's."""
    s = job_stack
    token = s.token()
    log = tmp_path / "runs.log"
    w1 = s.worker()
    job = s.submit(token, "notes.slow_retried", {"seconds": 2, "steps": 20, "log": str(log)})
    s.wait(job["id"], running_with_progress, what="running")
    os.kill(w1.pid, signal.SIGSTOP)
    w2 = s.worker()
    done = s.wait(job["id"], lambda j: j["state"] == "succeeded", timeout=40, what="succeeded by the 2nd worker")
    os.kill(w1.pid, signal.SIGCONT)
    time.sleep(2.5)  # time for the woken run to try to write
    after = s.job(job["id"])
    assert after["result"] == done["result"] and done["result"]["pid"] == w2.pid
    assert after["version"] == done["version"] and after["state"] == "succeeded"
    assert s.events(job["id"], "JobSucceeded") == ["JobSucceeded"]
    assert log.read_text().split().count("end") <= 2 and f"end {job['id']} {w2.pid}" in log.read_text()
    s.stop(w1)
    s.stop(w2)


def test_a_restart_loses_no_queued_job(job_stack):
    """Jobs submitted over HTTP to a server with no worker; the server is killed (-9) and a
    new one (with a worker) starts: every queued job runs. Then the queue itself loses its
    messages (flushed, as a Redis without persistence would on restart): recovery
    re-enqueues them from the jobs table."""
    s = job_stack
    token = s.token()
    addr, server = s.serve("--no-jobs")
    import http.client
    ids = []
    for i in range(4):
        c = http.client.HTTPConnection(addr, timeout=10)
        c.request("POST", "/api/jobs", body=json.dumps({"kind": "notes.count"}),
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 202
        ids.append(json.loads(r.read())["id"])
    s.stop(server, signal.SIGKILL)
    assert all(s.job(j)["state"] == "queued" for j in ids)
    addr, server = s.serve("--jobs")  # the restarted server starts a worker beside it
    for j in ids:
        assert s.wait(j, lambda job: job["state"] == "succeeded", timeout=30, what="succeeded")["result"] == {"count": 0}
    s.stop(server)
    lost = [s.submit(token, "notes.count")["id"] for _ in range(3)]
    s.ext.jobs.queue.huey.flush()
    w = s.worker()
    for j in lost:
        s.wait(j, lambda job: job["state"] == "succeeded", timeout=30, what="recovered and run")
    s.stop(w)


def test_the_schedule_runs_on_workers_once_per_slot(job_stack):
    """Two workers tick a 1-second entry for ~4 s: a run per slot, no slot twice."""
    s = job_stack
    since = time.time()
    workers = [s.worker(JOBS_SCHEDULE="notes.count_all=every 1") for _ in range(2)]
    time.sleep(5)
    for w in workers:
        s.stop(w)
    with s.ext.db.read() as c:
        rows = c.execute(sa.text("SELECT schedule_key, state FROM jobs WHERE schedule_key LIKE 'notes.count_all@%'")).fetchall()
    keys = [r[0] for r in rows]
    assert len(keys) >= 2 and len(keys) == len(set(keys)), keys
    assert sum(r[1] == "succeeded" for r in rows) >= 2
    assert all(r[0] >= time.strftime("notes.count_all@%Y-%m-%dT", time.gmtime(since)) for r in rows)


def _poll(addr, path, seconds, out, token=None):
    import http.client
    c = http.client.HTTPConnection(addr, timeout=10)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        c.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        r = c.getresponse()
        r.read()
        out.append((time.perf_counter() - t0, r.status))
        time.sleep(0.01)
    c.close()


def p99(samples):
    xs = sorted(samples)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


def bound(baseline_windows) -> float:
    """50 ms, or twice the baseline p99 of the same run when the machine is so loaded (other
    suites, CI neighbours) that /health misses 50 ms even then. The baseline is measured while
    an unrelated process burns a core at the same priority as the job worker / pool, so it
    carries the same CPU contention and differs only in where the work runs. A loop busy
    with the CPU work would answer in seconds, far past either."""
    base = min(p99([x for x, _ in w]) for w in baseline_windows)
    return max(0.050, 2 * base)


def baseline(addr, seconds=0.8, windows=2):
    """/health windows while a separate nice-10 process spins one core (the control)."""
    import subprocess
    import sys
    code = ("import os, time; os.nice(10); end = time.time() + %f\n"
            "while time.time() < end: sum(range(200))" % (seconds * windows + 1.0))
    burner = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.2)
        return health_windows(addr, seconds, windows)
    finally:
        burner.kill()
        burner.wait(5)


def health_windows(addr, seconds, windows=2):
    """/health latencies in ``windows`` back-to-back windows (a loaded CI machine can stall
    any process for a moment: the bound must hold in at least one window, which it never
    would if the loop itself were busy with the CPU work)."""
    out = []
    for _ in range(windows):
        lat: list = []
        _poll(addr, "/health", seconds, lat)
        out.append(lat)
    return out


def test_health_stays_fast_while_a_cpu_job_runs(job_stack):
    """A job spinning a core for 5 s runs in the worker process (the embedded server started
    it), and /health p99 stays under 50 ms meanwhile."""
    s = job_stack
    token = s.token()
    # progress written at the default pace (1 s), not the drills' 0.1 s
    addr, server = s.serve("--jobs", JOBS_PROGRESS_SECONDS=1)
    extra = [] if s.name == "embedded" else [s.worker(JOBS_PROGRESS_SECONDS=1)]
    quiet = baseline(addr)
    job = s.submit(token, "notes.slow", {"seconds": 5, "steps": 50, "burn": True})
    s.wait(job["id"], lambda j: j["state"] == "running", what="running")
    windows = health_windows(addr, 1.0, windows=3)
    assert s.job(job["id"])["state"] == "running"  # the CPU work lasted the whole measurement
    done = s.wait(job["id"], lambda j: j["state"] == "succeeded", timeout=30, what="succeeded")
    assert done["result"]["pid"] != server.pid  # not the web process
    figures = []
    for busy in windows:
        lat = [x for x, status in busy if status == 200]
        assert len(lat) == len(busy) and len(lat) > 15
        figures.append((p99(lat), statistics.median(lat), len(lat)))
    print(f"\n[{s.name}] /health while a CPU job runs: " + "; ".join(
        f"n={n} p50={p50 * 1000:.1f} ms p99={p * 1000:.1f} ms" for p, p50, n in figures)
        + f" (bound {bound(quiet) * 1000:.1f} ms)")
    assert min(f[0] for f in figures) < bound(quiet)
    for w in extra:
        s.stop(w)
    s.stop(server)


def test_offloop_pool_keeps_the_loop_serving_while_requests_wait_for_cpu_work(job_stack):
    """Two requests each wait for 2 s of CPU in the off-loop pool while another client polls
    /health: p99 under 50 ms; the burns answer; one over its time limit gets 503."""
    s = job_stack
    token = s.token()
    addr, server = s.serve("--no-jobs", CPU_POOL_SIZE=1)
    import http.client

    def burn(seconds, timeout, out):
        c = http.client.HTTPConnection(addr, timeout=30)
        c.request("POST", "/api/notes/burn", body=json.dumps({"seconds": seconds, "timeout": timeout}),
                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        r = c.getresponse()
        out.append((r.status, json.loads(r.read())))
    warm: list = []
    burn(0.01, 30, warm)  # starts the pool (forkserver) outside the measurement
    quiet = baseline(addr)
    results: list = []
    threads = [threading.Thread(target=burn, args=(2.0, 30, results)) for _ in range(2)]
    for t in threads:
        t.start()
    windows = health_windows(addr, 1.1, windows=3)
    still_waiting = len(results) < 2  # the burns (4 s of CPU on one pool process) outlast the windows
    for t in threads:
        t.join(30)
    assert still_waiting
    assert [r[0] for r in results] == [200, 200] and all(r[1]["loops"] > 0 for r in results)
    figures = []
    for lat in windows:
        xs = [x for x, st in lat if st == 200]
        assert len(xs) == len(lat) and len(xs) > 15
        figures.append((p99(xs), statistics.median(xs), len(xs)))
    print(f"\n[{s.name}] /health while 2 requests wait on the CPU pool: " + "; ".join(
        f"n={n} p50={p50 * 1000:.1f} ms p99={p * 1000:.1f} ms" for p, p50, n in figures)
        + f" (bound {bound(quiet) * 1000:.1f} ms)")
    assert min(f[0] for f in figures) < bound(quiet)
    late: list = []
    burn(3, 0.5, late)
    assert late[0][0] == 503 and late[0][1]["code"] == "computation_timeout"
    again: list = []
    burn(0.01, 30, again)  # a fresh pool serves the next call
    assert again[0][0] == 200
    s.stop(server)


def test_redis_down_enqueueing_fails_with_503_and_nothing_is_written(mariadb_url, new_client):
    """Production with Redis unreachable: POST /api/jobs is 503 ``jobs_unavailable`` with
    Retry-After, and no job row or event exists afterwards."""
    from app import create_app
    from app.migrate import upgrade
    app = create_app({"DATABASE_URL": mariadb_url, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                      "TRADELOOP_PLUGINS": ["tests.plugins.notes.plugin"], "SECRET_KEY": "x",
                      "KAFKA_BOOTSTRAP_SERVERS": None})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    ext = app.extensions["tradeloop"]
    upgrade(ext, echo=None)
    c = new_client(app)

    def counts():
        with ext.db.read() as conn:
            return (conn.execute(sa.text("SELECT COUNT(*) FROM jobs WHERE user_id=:u"), {"u": c.user.id}).scalar(),
                    conn.execute(sa.text("SELECT COUNT(*) FROM bus_outbox WHERE stream='jobs.events' "
                                         "AND user_id=:u"), {"u": c.user.id}).scalar())
    r = c.post("/api/jobs", json={"kind": "notes.count"}, idem="k-1")
    assert r.status_code == 503 and r.json["code"] == "jobs_unavailable" and r.headers["Retry-After"]
    assert "redis" in r.json["message"]
    assert counts() == (0, 0)
    assert c.get("/api/jobs").json == []
