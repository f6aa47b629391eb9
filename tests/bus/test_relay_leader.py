"""One relay at a time per stream set (issue 18, item 5): the lease in ``bus.lease`` and real
``tradeloop relay`` processes against a real Kafka-compatible broker (Tansu), on SQLite and
MariaDB. The issue's drill: a second relay started during writes published 34 duplicates in
300 events; now it waits and publishes nothing while the first lives."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import sqlalchemy as sa

from bus import outbox
from tests.conftest import ROOT

pytestmark = [pytest.mark.kafka]

NOTES = "tests.plugins.notes.plugin"
STREAM = "notes.events"
TRADELOOP = os.path.join(os.path.dirname(sys.executable), "tradeloop")


@pytest.fixture
def relay_app(stack_config, sqlite_dir, stack):
    """A fresh database of this stack with the notes plugin migrated."""
    from app import create_app
    from app.migrate import upgrade
    url = stack_config["DATABASE_URL"]
    if stack == "embedded":
        url = f"sqlite:///{sqlite_dir}/relay-{uuid.uuid4().hex[:8]}.db"
        eng = None
    else:
        name = f"tl_relay_{uuid.uuid4().hex[:8]}"
        base = url.rsplit("/", 1)[0]
        eng = sa.create_engine(base + "/test")
        with eng.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        url = f"{base}/{name}"
    app = create_app({"DATABASE_URL": url, "REDIS_URL": None, "KAFKA_BOOTSTRAP_SERVERS": None,
                      "TRADELOOP_PLUGINS": [NOTES], "SECRET_KEY": "relay"})
    upgrade(app.extensions["tradeloop"], echo=None)
    app.url = url
    yield app
    app.extensions["tradeloop"].db.dispose()
    if eng is not None:
        with eng.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")
        eng.dispose()


def _spawn_relay(app, bootstrap, tag):
    env = dict(os.environ)
    env.update(DATABASE_URL=app.url, KAFKA_BOOTSTRAP_SERVERS=bootstrap, TRADELOOP_PLUGINS=NOTES, PYTHONPATH=ROOT,
               SECRET_KEY="relay", RELAY_LEASE_SECONDS="3")
    env.pop("REDIS_URL", None)
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"relay-leader-{tag}-{os.getpid()}.log"), "ab")
    return subprocess.Popen([TRADELOOP, "relay"], env=env, cwd=ROOT, stdout=log, stderr=log)


def _emit(db, n, per_tx=10):
    for start in range(0, n, per_tx):
        with db.transaction() as c:
            outbox.emit_many(c, STREAM, [dict(
                type="NoteCreated", aggregate_type="note", aggregate_id=str(uuid.uuid4()), aggregate_version=1,
                payload={"title": f"n{start + i}"}, user_id=7) for i in range(min(per_tx, n - start))])


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _holder(db):
    from bus.lease import leases
    from bus.sql import utcnow
    with db.read() as c:
        row = c.execute(sa.select(leases.c.holder, leases.c.expires_at)).first()
    return row.holder if row is not None and row.expires_at > utcnow() else None


def _published(db):
    with db.read() as c:
        return outbox.get_cursor(c, "relay:kafka", STREAM)


def _topic_event_ids(bootstrap, expect_at_least, idle=2.0, timeout=60):
    """Every message on notes.events from the start (a fresh group), until ``idle`` seconds
    pass with nothing new after at least ``expect_at_least`` arrived."""
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "fetch.wait.max.ms": 10})
    c.subscribe([STREAM])
    ids, last_new, deadline = [], time.monotonic(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                ids.append(json.loads(m.value())["event_id"] if m.value() and m.value()[:1] == b"{"
                           else dict(m.headers() or [])["ce_id"].decode())
                last_new = time.monotonic()
            elif len(ids) >= expect_at_least and time.monotonic() - last_new > idle:
                break
    finally:
        c.close()
    return ids


def test_a_second_relay_publishes_nothing_while_the_first_lives(relay_app, broker):
    db = relay_app.extensions["tradeloop"].db
    first = _spawn_relay(relay_app, broker.bootstrap, "first")
    second = third = None
    try:
        _emit(db, 20)
        _wait(lambda: _holder(db) is not None and _published(db) == 20, 60, "the first relay to lead and publish")
        leader = _holder(db)
        second = _spawn_relay(relay_app, broker.bootstrap, "second")
        # the drill: writes keep coming while both run
        for _ in range(28):
            _emit(db, 10, per_tx=5)
            time.sleep(0.05)
        _wait(lambda: _published(db) == 300, 60, "all 300 events to be published")
        assert _holder(db) == leader  # the second relay never took over
        ids = _topic_event_ids(broker.bootstrap, 300)
        assert len(ids) == 300 and len(set(ids)) == 300, f"{len(ids)} messages, {len(set(ids))} distinct"

        # a clean stop hands over at once (the lease is released, not left to expire)
        first.send_signal(signal.SIGTERM)
        first.wait(15)
        _wait(lambda: _holder(db) not in (None, leader), 10, "the second relay to take over")
        _emit(db, 50)
        _wait(lambda: _published(db) == 350, 60, "the second relay to publish")

        # killed -9 (no release): a third relay waits out the 3 s lease, then takes over
        second_holder = _holder(db)
        second.send_signal(signal.SIGKILL)
        second.wait(10)
        third = _spawn_relay(relay_app, broker.bootstrap, "third")
        _emit(db, 20)
        _wait(lambda: _published(db) == 370, 60, "the third relay to take over and publish")
        assert _holder(db) not in (None, second_holder)
        ids = _topic_event_ids(broker.bootstrap, 370)
        assert len(ids) == 370 and len(set(ids)) == 370
    finally:
        for p in (first, second, third):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


def test_lease_has_one_holder_and_passes_on_when_it_lapses(relay_app):
    from bus.lease import Lease
    db = relay_app.extensions["tradeloop"].db
    a, b = Lease(db, "t:lease", ttl=0.6, holder="a"), Lease(db, "t:lease", ttl=0.6, holder="b")
    assert a.acquire() and not b.acquire()
    assert a.acquire()  # renew
    with db.transaction() as c:
        assert a.holds(c) and not b.holds(c)
    time.sleep(0.8)  # a stops renewing
    assert b.acquire() and not a.acquire()
    with db.transaction() as c:
        assert not a.holds(c)
    b.release()
    assert a.acquire()
