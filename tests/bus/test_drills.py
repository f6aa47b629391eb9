"""Failure drills on the production stack (MariaDB + a Kafka-compatible broker), each ending
with every event handled exactly once in effect:

* the relay is killed -9 while events are still being written, then started again;
* the worker (``tradeloop worker``) is killed -9 mid-stream, then started again;
* the broker goes down (events wait in the outbox), then comes back *empty* (Tansu's memory
  engine loses its topics): the relay notices the lost topic and republishes the stream.

The effect measured is the notes plugin's handler: ``test_note_stats.created`` counts the
NoteCreated events handled per user, so a duplicate shows up as an over-count.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from bus import outbox
from tests.conftest import MARIADB_URL, ROOT, missing

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

NOTES = "tests.plugins.notes.plugin"
STREAM = "notes.events"
TRADELOOP = os.path.join(os.path.dirname(sys.executable), "tradeloop")


@pytest.fixture
def drill_app():
    """A fresh MariaDB database with the notes plugin migrated (dropped afterwards)."""
    from app import create_app
    from app.migrate import upgrade
    name = f"tl_drill_{uuid.uuid4().hex[:8]}"
    try:
        eng = sa.create_engine(MARIADB_URL + "/test")
        with eng.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    except Exception as exc:
        missing("MariaDB", str(exc)[:200])
    url = f"{MARIADB_URL}/{name}"
    app = create_app({"DATABASE_URL": url, "REDIS_URL": None, "KAFKA_BOOTSTRAP_SERVERS": None,
                      "TRADELOOP_PLUGINS": [NOTES], "SECRET_KEY": "drill"})
    upgrade(app.extensions["tradeloop"], echo=None)
    app.drill_url = url
    yield app
    app.extensions["tradeloop"].db.dispose()
    with eng.begin() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    eng.dispose()


def _env(app, bootstrap):
    env = dict(os.environ)
    env.update(DATABASE_URL=app.drill_url, KAFKA_BOOTSTRAP_SERVERS=bootstrap, TRADELOOP_PLUGINS=NOTES,
               PYTHONPATH=ROOT, SECRET_KEY="drill", CONSUMER_BACKOFF_SECONDS="0.05")
    env.pop("REDIS_URL", None)
    return env


def _spawn(app, bootstrap, *args):
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"drill-{args[0]}-{os.getpid()}.log"), "ab")
    return subprocess.Popen([TRADELOOP, *args], env=_env(app, bootstrap), cwd=ROOT, stdout=log, stderr=log)


def _kill9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _emit_notes(db, user_id: int, n: int, per_tx: int = 50) -> None:
    for start in range(0, n, per_tx):
        with db.transaction() as c:
            outbox.emit_many(c, STREAM, [dict(
                type="NoteCreated", aggregate_type="note", aggregate_id=str(uuid.uuid4()),
                aggregate_version=1, payload={"title": f"n{start + i}"}, user_id=user_id)
                for i in range(min(per_tx, n - start))])


def _created(db, user_id: int) -> int:
    from tests.plugins.notes.plugin import note_stats
    with db.transaction() as c:
        return int(c.execute(sa.select(note_stats.c.created).where(note_stats.c.user_id == user_id)).scalar() or 0)


def _processed(db, group: str) -> int:
    with db.transaction() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(outbox.processed)
                             .where(outbox.processed.c.consumer_group == group)).scalar())


def _relay_position(db) -> int:
    with db.transaction() as c:
        return outbox.get_cursor(c, "relay:kafka", STREAM)


def _head(db) -> int:
    with db.transaction() as c:
        return outbox.head(c, STREAM)


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _notes_runner(app, bus):
    from bus.consumer import Group, Runner
    subs = app.extensions["tradeloop"].plugins.subscriptions()["notes"]
    return Runner(app.extensions["tradeloop"].db, bus, Group.from_subscriptions("notes", subs),
                  max_attempts=3, backoff=0.05)


def _consume_until(runner, cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"consumer stuck: {runner.stats}"
        runner.run_once(timeout=0.2)


def test_relay_killed_9_mid_stream_loses_nothing_and_duplicates_nothing(drill_app, broker):
    from bus.kafka import KafkaBus
    db = drill_app.extensions["tradeloop"].db
    user, first, after_kill = 7, 3000, 200
    n = first + after_kill
    writer = threading.Thread(target=_emit_notes, args=(db, user, first, 20))
    writer.start()  # events keep arriving while the relay runs and dies
    relay = _spawn(drill_app, broker.bootstrap, "relay")
    try:
        _wait(lambda: _relay_position(db) > 0, 30, "the relay to publish something")
        _kill9(relay)
        killed_at = _relay_position(db)
        writer.join(60)
        _emit_notes(db, user, after_kill, 20)  # more arrive while no relay runs
        assert killed_at < _head(db) == n  # it died with events still pending
        relay = _spawn(drill_app, broker.bootstrap, "relay")
        _wait(lambda: _relay_position(db) == n, 30, "the restarted relay to catch up")
    finally:
        _kill9(relay)
    bus = KafkaBus(broker.bootstrap, client_id="drill")
    runner = _notes_runner(drill_app, bus)
    try:
        _consume_until(runner, lambda: _created(db, user) >= n, 40)
        runner.run_once(timeout=1.0)  # anything left over (duplicates) must change nothing
    finally:
        runner.close()
        bus.close()
    assert _created(db, user) == n
    assert _processed(db, "notes") == n
    assert runner.stats.handled == n


def test_worker_killed_9_mid_stream_redelivers_without_double_effect(drill_app, broker):
    from bus.kafka import KafkaBus
    from bus.relay import Relay
    db = drill_app.extensions["tradeloop"].db
    user, n = 11, 6000
    _emit_notes(db, user, n, per_tx=200)
    bus = KafkaBus(broker.bootstrap, client_id="drill")
    try:
        assert Relay(db, bus, [STREAM]).run_once() == n
    finally:
        bus.close()
    worker = _spawn(drill_app, broker.bootstrap, "worker")
    try:
        _wait(lambda: _created(db, user) > 0, 40, "the worker to handle something")
        _kill9(worker)
        at_kill = _created(db, user)
        assert 0 < at_kill  # (usually < n: it died mid-stream with offsets uncommitted)
        worker = _spawn(drill_app, broker.bootstrap, "worker")
        _wait(lambda: _created(db, user) >= n, 40, "the restarted worker to finish")
        time.sleep(1.0)  # let any redelivered duplicates arrive: they must change nothing
    finally:
        _kill9(worker)
    assert _created(db, user) == n
    assert _processed(db, "notes") == n


def test_broker_down_then_back_empty_events_wait_then_all_arrive_once(drill_app, broker):
    from bus.kafka import KafkaBus
    from bus.relay import Relay
    db = drill_app.extensions["tradeloop"].db
    user = 23
    bus = KafkaBus(broker.bootstrap, client_id="drill", producer_config={"message.timeout.ms": 2000})
    relay = Relay(db, bus, [STREAM], max_backoff=0.5)
    stop = threading.Event()
    relay_thread = threading.Thread(target=relay.run_forever, kwargs={"stop": stop.is_set}, daemon=True)
    relay_thread.start()
    runner = _notes_runner(drill_app, bus)
    consumer_errors = []

    def consume():
        while not stop.is_set():
            try:
                runner.run_once(timeout=0.2)
            except Exception as exc:  # commits fail while the broker is away; keep going
                consumer_errors.append(exc)
                time.sleep(0.2)
    consumer_thread = threading.Thread(target=consume, daemon=True)
    consumer_thread.start()
    try:
        _emit_notes(db, user, 50)
        _wait(lambda: _created(db, user) == 50, 30, "the first 50 events")

        broker.stop()
        _emit_notes(db, user, 50)
        time.sleep(3.0)  # several failed publish attempts
        assert relay.failures > 0
        assert relay.pending() == 50       # rows wait in the outbox, none marked sent
        assert _created(db, user) == 50

        broker.start()  # same address, memory storage: every topic and offset is gone
        _wait(lambda: _created(db, user) >= 100 and relay.pending() == 0, 60, "the events after the outage")
        time.sleep(1.0)
    finally:
        stop.set()
        relay_thread.join(20)
        consumer_thread.join(20)
        runner.close()
        bus.close()
    assert _created(db, user) == 100
    assert _processed(db, "notes") == 100
    # the lost topic was recreated and the whole stream republished: the first 50 went twice
    assert relay.published >= 150
    assert runner.stats.skipped_duplicates >= 50
