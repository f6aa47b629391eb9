"""SSE fixtures: real ``tradeloop serve`` (gevent) processes and a raw streaming client.

``sse_stack`` is a fresh database per stack (SQLite file / MariaDB + Redis) with the notes
plugin migrated; ``serve(stack, **env)`` starts a server on it and returns its base URL.
``SSEClient`` speaks the wire format the way a browser's EventSource does (``id:``,
``data:``, ``retry:``, comments, ``Last-Event-ID`` on reconnect).
"""
from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import MARIADB_URL, REDIS_URL, ROOT, free_port, missing, wait_port

NOTES = "tests.plugins.notes.plugin"
TRADELOOP = os.path.join(os.path.dirname(sys.executable), "tradeloop")


class Stack:
    def __init__(self, name, database_url, redis_url):
        self.name, self.database_url, self.redis_url = name, database_url, redis_url
        from app import create_app
        from app.migrate import upgrade
        self.app = create_app({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                               "KAFKA_BOOTSTRAP_SERVERS": None, "TRADELOOP_PLUGINS": [NOTES],
                               "SECRET_KEY": "sse-test"})
        upgrade(self.app.extensions["tradeloop"], echo=None)
        self.procs: list[subprocess.Popen] = []

    @property
    def db(self):
        return self.app.extensions["tradeloop"].db

    def user(self):
        from app import auth
        with self.db.transaction() as c:
            user, token = auth.create_user(c, f"sse_{uuid.uuid4().hex[:10]}")
        return user.id, token

    def serve(self, **env) -> str:
        port = free_port()
        e = dict(os.environ)
        e.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        e.update(DATABASE_URL=self.database_url, TRADELOOP_PLUGINS=NOTES, PYTHONPATH=ROOT,
                 SECRET_KEY="sse-test", SSE_HEARTBEAT_SECONDS="0.5", SSE_RETRY_MS="1500")
        if self.redis_url:
            e["REDIS_URL"] = self.redis_url
        else:
            e.pop("REDIS_URL", None)
        e.update({k: str(v) for k, v in env.items()})
        log = open(os.path.join(tempfile.gettempdir(), f"sse-serve-{port}.log"), "ab")
        proc = subprocess.Popen([TRADELOOP, "serve", "--port", str(port), "--no-demo", "--no-migrate",
                                 "--no-workers"], env=e, cwd=ROOT, stdout=log, stderr=log)
        self.procs.append(proc)
        wait_port(port, 30)
        return f"127.0.0.1:{port}"

    def head(self, stream):
        with self.db.transaction() as c:
            return int(c.execute(sa.text("SELECT last_seq FROM bus_streams WHERE stream = :s"), {"s": stream}).scalar() or 0)

    def user_seqs(self, user_id, after=0):
        """The user's positions in notes.events, straight from the table."""
        with self.db.transaction() as c:
            return [r[0] for r in c.execute(sa.text(
                "SELECT seq FROM bus_outbox WHERE stream = 'notes.events' AND user_id = :u AND seq > :a ORDER BY seq"),
                {"u": user_id, "a": after})]

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.db.dispose()


@pytest.fixture(scope="module", params=["embedded", "production"])
def sse_stack(request):
    if request.param == "embedded":
        d = tempfile.mkdtemp(prefix="tl_sse_")
        s = Stack("embedded", f"sqlite:///{d}/sse.db", None)
        yield s
        s.close()
        shutil.rmtree(d, ignore_errors=True)
        return
    import redis
    name = f"tl_sse_{uuid.uuid4().hex[:8]}"
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping()
        eng = sa.create_engine(MARIADB_URL + "/test")
        with eng.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    except Exception as exc:
        missing("MariaDB/Redis", str(exc)[:200])
    s = Stack("production", f"{MARIADB_URL}/{name}", REDIS_URL)
    yield s
    s.close()
    with eng.begin() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    eng.dispose()


@pytest.fixture(scope="module")
def server(sse_stack):
    return sse_stack.serve()


def post_note(addr, token, title="n"):
    c = http.client.HTTPConnection(addr, timeout=10)
    c.request("POST", "/api/notes", body=json.dumps({"title": title}),
              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 201, body
    return json.loads(body)


class SSEClient:
    """A streaming client parsing Server-Sent Events into messages on a queue."""

    def __init__(self, addr, path, token=None, last_event_id=None, headers=None):
        self.conn = http.client.HTTPConnection(addr, timeout=30)
        h = {"Accept": "text/event-stream", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        if last_event_id is not None:
            h["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", path, headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.messages: queue.Queue = queue.Queue()
        self.comments: list[str] = []
        self.retries: list[int] = []
        self.retry = None
        self.last_id = None
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = self.resp.read()

    def _read(self):
        ev = {}
        try:
            while True:
                raw = self.resp.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if "data" in ev:
                        self.last_id = ev.get("id", self.last_id)
                        self.messages.put({"id": int(ev["id"]) if "id" in ev else None,
                                           "event": ev.get("event"),
                                           "data": json.loads(ev["data"]), "at": time.monotonic()})
                    ev = {}
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "retry":
                        self.retry = int(value)
                        self.retries.append(self.retry)
                    elif field == "data":
                        ev["data"] = ev["data"] + "\n" + value if "data" in ev else value
                    elif field in ("id", "event"):
                        ev[field] = value
        except Exception:
            pass
        self.messages.put(None)

    def next(self, timeout=10.0):
        return self.messages.get(timeout=timeout)

    def take(self, n, timeout=10.0):
        return [self.next(timeout) for _ in range(n)]

    def nothing_within(self, seconds) -> bool:
        try:
            self.messages.get(timeout=seconds)
            return False
        except queue.Empty:
            return True

    def close(self):
        try:
            self.conn.sock.shutdown(2)
        except Exception:
            pass
        self.conn.close()
