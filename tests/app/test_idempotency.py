"""Idempotency-Key: replay, 422 on a different request, 409 while in flight, per user,
durable in the request's transaction, correct with the cache gone."""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import signal
import subprocess
import tempfile

import pytest
import sqlalchemy as sa

from tests.conftest import free_port, wait_port
from tests.plugins.notes.plugin import notes

NOTES = "tests.plugins.notes.plugin"


def count_notes(app, user_id, title=None):
    q = sa.select(sa.func.count()).select_from(notes).where(notes.c.user_id == user_id)
    if title:
        q = q.where(notes.c.title == title)
    with app.extensions["tradeloop"].db.transaction() as c:
        return c.execute(q).scalar()


def count_events(app, user_id):
    from bus.outbox import outbox
    with app.extensions["tradeloop"].db.transaction() as c:
        return c.execute(sa.select(sa.func.count()).select_from(outbox).where(
            outbox.c.user_id == user_id, outbox.c.stream == "notes.events")).scalar()


def test_same_key_same_body_replays_first_response(app_factory, new_client):
    app = app_factory([NOTES])
    c = new_client(app)
    first = c.post("/api/notes", json={"title": "t", "amount": "1.5"}, idem="key-1")
    again = c.post("/api/notes", json={"amount": "1.5", "title": "t"}, idem="key-1")  # key order differs
    assert first.status_code == 201 and again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["ETag"] == first.headers["ETag"] == '"1"'
    assert count_notes(app, c.user.id) == 1
    assert count_events(app, c.user.id) == 1  # no second event


def test_same_key_different_body_is_422(app_factory, new_client):
    app = app_factory([NOTES])
    c = new_client(app)
    assert c.post("/api/notes", json={"title": "a"}, idem="k").status_code == 201
    r = c.post("/api/notes", json={"title": "b"}, idem="k")
    assert r.status_code == 422
    assert r.json["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in r.json["errors"]["headers"]
    # same key on another path is also a different request
    assert c.post("/api/notes/echo", json={"title": "a"}, idem="k").status_code == 422
    assert count_notes(app, c.user.id) == 1


def test_keys_are_scoped_per_user(app_factory, new_client):
    app = app_factory([NOTES])
    a, b = new_client(app), new_client(app)
    ra = a.post("/api/notes", json={"title": "x"}, idem="shared")
    rb = b.post("/api/notes", json={"title": "x"}, idem="shared")
    assert ra.status_code == rb.status_code == 201
    assert ra.json["id"] != rb.json["id"]
    assert count_notes(app, a.user.id) == 1 and count_notes(app, b.user.id) == 1


def test_failed_request_is_not_recorded_and_can_be_retried(app_factory, new_client):
    app = app_factory([NOTES])
    c = new_client(app)
    bad = c.post("/api/notes", json={"title": ""}, idem="retry-me")
    assert bad.status_code == 422 and bad.json["code"] == "validation_error"
    assert "title" in bad.json["errors"]["json"]
    # a crash after writing (500) rolls back the note, the event and the key together
    crashed = c.post("/api/notes", json={"title": "boom", "fail": True}, idem="crash")
    assert crashed.status_code == 500 and crashed.json["status"] == 500
    assert count_notes(app, c.user.id) == 0 and count_events(app, c.user.id) == 0
    ok = c.post("/api/notes", json={"title": "boom", "fail": False}, idem="crash2")
    assert ok.status_code == 201


def test_twenty_concurrent_posts_with_one_key_create_one_row(app_factory, new_client, stack):
    app = app_factory([NOTES])
    c = new_client(app)
    body = {"title": "race", "sleep": 0.2}

    def post(_):
        client = app.test_client()
        return client.post("/api/notes", json=body, headers={
            "Authorization": f"Bearer {c.token}", "Idempotency-Key": "race-key"})

    with cf.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    statuses = [r.status_code for r in responses]
    assert statuses == [201] * 20, statuses
    bodies = {json.dumps(r.get_json(), sort_keys=True) for r in responses}
    assert len(bodies) == 1
    assert count_notes(app, c.user.id, "race") == 1
    assert count_events(app, c.user.id) == 1


def test_in_flight_beyond_the_wait_is_409(app_factory, new_client):
    app = app_factory([NOTES], IDEMPOTENCY_WAIT_SECONDS=0.1)
    c = new_client(app)
    with cf.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(lambda: app.test_client().post(
            "/api/notes", json={"title": "slow", "sleep": 1.0},
            headers={"Authorization": f"Bearer {c.token}", "Idempotency-Key": "inflight"}))
        import time
        time.sleep(0.3)
        second = app.test_client().post("/api/notes", json={"title": "slow", "sleep": 1.0},
                                        headers={"Authorization": f"Bearer {c.token}", "Idempotency-Key": "inflight"})
        first = slow.result()
    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json["code"] == "idempotency_key_in_flight"
    assert second.headers["Retry-After"] == "1"
    # once finished, the same key replays
    third = c.post("/api/notes", json={"title": "slow", "sleep": 1.0}, idem="inflight")
    assert third.status_code == 201 and third.json == first.get_json()


@pytest.fixture
def own_redis():
    """A Redis server of this test's own, which it may kill."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    port = free_port()
    d = tempfile.mkdtemp()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL)
    wait_port(port)
    yield proc, f"redis://127.0.0.1:{port}/0"
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(d, ignore_errors=True)


def test_killing_redis_changes_no_outcome(app_factory, new_client, own_redis, stack):
    proc, url = own_redis
    app = app_factory([NOTES], REDIS_URL=url)
    c = new_client(app)
    before = c.post("/api/notes", json={"title": "r"}, idem="cache-1")
    assert before.status_code == 201
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # cached key still replays from the durable record
    replay = c.post("/api/notes", json={"title": "r"}, idem="cache-1")
    assert replay.status_code == 201 and replay.json == before.json
    # reuse with another body is still 422
    assert c.post("/api/notes", json={"title": "other"}, idem="cache-1").status_code == 422
    # new keys work, and concurrent duplicates still create one row
    with cf.ThreadPoolExecutor(10) as pool:
        rs = list(pool.map(lambda _: app.test_client().post(
            "/api/notes", json={"title": "nocache", "sleep": 0.1},
            headers={"Authorization": f"Bearer {c.token}", "Idempotency-Key": "cache-2"}), range(10)))
    assert {r.status_code for r in rs} == {201}
    assert len({r.get_data() for r in rs}) == 1
    assert count_notes(app, c.user.id, "nocache") == 1
    health = app.test_client().get("/health")
    assert health.status_code == 200 and health.json["checks"]["cache"]["ok"] is False


def test_key_longer_than_255_is_400(app_factory, new_client):
    app = app_factory([NOTES])
    c = new_client(app)
    r = c.post("/api/notes", json={"title": "x"}, idem="k" * 256)
    assert r.status_code == 400 and "Idempotency-Key" in r.json["errors"]["headers"]


def test_an_empty_or_blank_key_is_400_not_ignored(app_factory, new_client):
    """An Idempotency-Key header that is present but empty (or only spaces) is a client
    error naming the header, not a request without a key (which would run twice on retry).
    (curl's ``-H 'Idempotency-Key:'`` removes the header instead of sending it empty.)"""
    app = app_factory([NOTES])
    c = new_client(app)
    for blank in ("", "   "):
        r = c.post("/api/notes", json={"title": "x"}, headers={"Idempotency-Key": blank})
        assert r.status_code == 400, (blank, r.json)
        assert r.json["errors"]["headers"]["Idempotency-Key"] == ["must be 1-255 characters"]


def test_expired_record_is_forgotten(app_factory, new_client):
    app = app_factory([NOTES], IDEMPOTENCY_TTL_SECONDS=1)
    c = new_client(app)
    assert c.post("/api/notes", json={"title": "a"}, idem="ttl").status_code == 201
    from app.idempotency import _cache_key
    from app.tables import idempotency_keys
    with app.extensions["tradeloop"].db.transaction() as conn:
        conn.execute(idempotency_keys.update().where(idempotency_keys.c.user_id == c.user.id)
                     .values(expires_at=idempotency_keys.c.created_at))
    app.extensions["tradeloop"].cache.delete(_cache_key(app.extensions["tradeloop"], c.user.id, "ttl"))
    again = c.post("/api/notes", json={"title": "b"}, idem="ttl")
    assert again.status_code == 201 and again.json["title"] == "b"


def test_a_view_that_never_opens_the_database_still_leaves_a_durable_record(app_factory, new_client):
    """The echo view touches no table, so the request never opens a transaction of its own.
    Its answer must still be recorded in the database, not only in the cache: with the cache
    entry gone the same key replays it, and the key with another body is 422."""
    from app.idempotency import _cache_key
    from app.tables import idempotency_keys
    app = app_factory([NOTES])
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    first = c.post("/api/notes/echo", json={"title": "a"}, idem="no-db")
    assert first.status_code == 200 and first.json == {"ok": True}
    with ext.db.read() as conn:
        row = conn.execute(sa.select(idempotency_keys).where(
            idempotency_keys.c.user_id == c.user.id, idempotency_keys.c.idem_key == "no-db")).first()
    assert row is not None and row.status_code == 200
    assert json.loads(row.response_body) == first.json
    ext.cache.delete(_cache_key(ext, c.user.id, "no-db"))
    again = c.post("/api/notes/echo", json={"title": "a"}, idem="no-db")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert c.post("/api/notes/echo", json={"title": "b"}, idem="no-db").status_code == 422
