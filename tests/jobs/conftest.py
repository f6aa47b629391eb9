"""Real processes for the job drills: ``tradeloop serve`` and ``python -m app.jobs worker`` on a
fresh database per stack (SQLite file + SQLite job queue / MariaDB + Redis)."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import MARIADB_URL, REDIS_URL, ROOT, free_port, missing, wait_port

NOTES = "tests.plugins.notes.plugin"
TRADELOOP = os.path.join(os.path.dirname(sys.executable), "tradeloop")
JOB_ENV = {"JOBS_LEASE_SECONDS": "2", "JOBS_TICK_SECONDS": "1", "JOBS_PROGRESS_SECONDS": "0.1",
           "JOBS_REQUEUE_AFTER_SECONDS": "2", "JOBS_WORKER_THREADS": "1"}


class JobStack:
    def __init__(self, name, database_url, redis_url, workdir):
        from app import create_app
        from app.migrate import upgrade
        self.name, self.database_url, self.redis_url, self.workdir = name, database_url, redis_url, workdir
        self.config = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": None,
                       "TRADELOOP_PLUGINS": [NOTES], "SECRET_KEY": "jobs-test",
                       **{k: float(v) for k, v in JOB_ENV.items()}}
        self.app = create_app(self.config)
        self.ext = self.app.extensions["tradeloop"]
        upgrade(self.ext, echo=None)
        self.procs: list[subprocess.Popen] = []

    def env(self, **extra) -> dict:
        e = dict(os.environ)
        for k in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "JOBS_SCHEDULE"):
            e.pop(k, None)
        e.update(DATABASE_URL=self.database_url, TRADELOOP_PLUGINS=NOTES, PYTHONPATH=ROOT, SECRET_KEY="jobs-test",
                 **JOB_ENV)
        if self.redis_url:
            e["REDIS_URL"] = self.redis_url
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def _log(self, what):
        return open(os.path.join(self.workdir, f"{what}-{time.time_ns()}.log"), "ab")

    def worker(self, *args, **env) -> subprocess.Popen:
        log = self._log("worker")
        proc = subprocess.Popen([sys.executable, "-m", "app.jobs", "worker", *args], env=self.env(**env),
                                cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        self.procs.append(proc)
        return proc

    def serve(self, *args, **env) -> tuple[str, subprocess.Popen]:
        port = free_port()
        log = self._log("serve")
        proc = subprocess.Popen([TRADELOOP, "serve", "--port", str(port), "--no-demo", "--no-migrate",
                                 "--no-workers", *args], env=self.env(**env), cwd=ROOT, stdout=log, stderr=log,
                                start_new_session=True)
        self.procs.append(proc)
        wait_port(port, 60)
        return f"127.0.0.1:{port}", proc

    def token(self, admin=False):
        from app import auth
        with self.ext.db.transaction() as c:
            _user, token = auth.create_user(c, f"job_{uuid.uuid4().hex[:10]}", admin=admin)
        return token

    def submit(self, token, kind, params=None):
        with self.app.test_client() as c:
            r = c.post("/api/jobs", json={"kind": kind, "params": params or {}},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 202, r.json
        return r.json

    def job(self, job_id):
        from app.jobs import store
        with self.ext.db.read() as c:
            return store.public(store.get(c, job_id))

    def wait(self, job_id, cond, timeout=30.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if cond(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id}: {what} not reached in {timeout}s; last: {self.job(job_id)}")

    def events(self, job_id, type_=None):
        q = "SELECT type FROM bus_outbox WHERE stream='jobs.events' AND aggregate_id=:j ORDER BY seq"
        with self.ext.db.read() as c:
            types = [r[0] for r in c.execute(sa.text(q), {"j": job_id})]
        return [t for t in types if type_ is None or t == type_]

    def stop(self, proc, sig=signal.SIGTERM):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)  # the process and the job worker it started
            except ProcessLookupError:
                pass
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        deadline = time.monotonic() + 15  # and the job worker a server started
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def close(self):
        for p in self.procs:
            self.stop(p)
        self.ext.db.dispose()


@pytest.fixture(scope="module", params=["embedded", "production"])
def job_stack(request):
    d = tempfile.mkdtemp(prefix="tl_jobs_")
    if request.param == "embedded":
        s = JobStack("embedded", f"sqlite:///{d}/jobs.db", None, d)
        yield s
        s.close()
        shutil.rmtree(d, ignore_errors=True)
        return
    import redis
    name = f"tl_jobs_{uuid.uuid4().hex[:8]}"
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
        eng = sa.create_engine(MARIADB_URL + "/test")
        with eng.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    except Exception as exc:
        missing("MariaDB/Redis", str(exc)[:200])
    s = JobStack("production", f"{MARIADB_URL}/{name}", REDIS_URL, d)
    yield s
    try:
        s.ext.jobs.queue.huey.flush()
    except Exception:
        pass
    s.close()
    with eng.begin() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    eng.dispose()
    shutil.rmtree(d, ignore_errors=True)


def http_get(addr, path, token=None, timeout=10):
    c = http.client.HTTPConnection(addr, timeout=timeout)
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body or b"null")
