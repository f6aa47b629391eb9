"""Bus fixtures: one harness per (backend, stack).

``bus_env`` is parametrised over the backend ("local" = the in-process bus reading the
outbox; "kafka" = outbox -> Relay -> Tansu -> KafkaConsumer) and, through ``app_factory``,
over the stack (SQLite / MariaDB). Each test gets its own stream name (``bt<hex>.events``),
so Kafka topics, relay positions and consumer groups never mix between tests.
"""
from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from bus import outbox
from bus.consumer import Group, Runner

NOTES = "tests.plugins.notes.plugin"

effects_md = sa.MetaData()
# No unique key on purpose: a handler running twice for one event shows up as two rows.
effects = sa.Table(
    "test_bus_effects", effects_md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("consumer_group", sa.String(120), nullable=False),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("aggregate_id", sa.String(64), nullable=False),
    sa.Column("aggregate_version", sa.Integer),
)


def record_effect(group: str):
    def handler(conn, ev):
        conn.execute(effects.insert().values(
            consumer_group=group, event_id=ev.event_id, stream=ev.stream, seq=ev.event_seq,
            aggregate_id=ev.aggregate_id, aggregate_version=ev.aggregate_version))
    return handler


class Harness:
    def __init__(self, app, backend: str, bus):
        self.app, self.backend, self.bus = app, backend, bus
        self.ext = app.extensions["tradeloop"]
        self.db = self.ext.db
        self.context = f"bt{uuid.uuid4().hex[:10]}"
        self.stream = f"{self.context}.events"
        self.runners: list[Runner] = []
        self.relay = None
        if bus.needs_relay:
            from bus.relay import Relay
            self.relay = Relay(self.db, bus, [self.stream], batch_size=500)

    # -- writing -------------------------------------------------------------------------
    def emit(self, aggregate_id: str, version: int, *, type_: str = "Thing", payload=None, user_id=1, conn=None):
        def go(c):
            return outbox.emit(c, self.stream, type_, aggregate_type="thing", aggregate_id=aggregate_id,
                               aggregate_version=version, payload=payload or {"v": version}, user_id=user_id)
        if conn is not None:
            return go(conn)
        with self.db.transaction() as c:
            return go(c)

    def emit_round_robin(self, aggregates: int, per_aggregate: int, **kw) -> list:
        out = []
        for v in range(1, per_aggregate + 1):
            for a in range(aggregates):
                out.append(self.emit(f"agg-{a}", v, **kw))
        return out

    # -- consuming -----------------------------------------------------------------------
    def runner(self, group: str | None = None, handlers: dict | None = None, **kw) -> Runner:
        group = group or f"g{uuid.uuid4().hex[:8]}"
        handlers = handlers or {f"{self.context}.Thing": record_effect(group)}
        kw.setdefault("max_attempts", 3)
        kw.setdefault("backoff", 0.01)
        r = Runner(self.db, self.bus, Group.from_subscriptions(group, handlers), **kw)
        self.runners.append(r)
        return r

    def relay_all(self) -> int:
        return self.relay.run_once() if self.relay else 0

    def pump(self, runner: Runner, until, timeout: float = 30.0) -> None:
        """Relay and consume until ``until()`` holds (or fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached in {timeout}s; stats={runner.stats}")
            self.relay_all()
            runner.run_once(timeout=0.2)

    def effects(self, group: str | None = None) -> list:
        q = sa.select(effects).where(effects.c.stream == self.stream).order_by(effects.c.id)
        if group:
            q = q.where(effects.c.consumer_group == group)
        with self.db.transaction() as c:
            return c.execute(q).fetchall()

    def close(self):
        for r in self.runners:
            r.close()
        if self.bus is not self.ext.bus:
            self.bus.close()


@pytest.fixture(params=["local", "kafka"])
def backend(request):
    return request.param


@pytest.fixture
def bus_app(app_factory):
    app = app_factory([NOTES])
    with app.extensions["tradeloop"].db.engine.begin() as c:
        effects_md.create_all(c, checkfirst=True)
    return app


@pytest.fixture
def bus_env(request, backend, bus_app):
    if backend == "kafka":
        from bus.kafka import KafkaBus
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        bus = KafkaBus(bootstrap, client_id="tl-test", partitions=3)
    else:
        bus = bus_app.extensions["tradeloop"].bus
    h = Harness(bus_app, backend, bus)
    yield h
    h.close()
