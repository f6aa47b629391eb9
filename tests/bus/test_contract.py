"""The bus contract, written once and run against every backend (in-process and Kafka via
the relay) on every stack (SQLite and MariaDB)."""
from __future__ import annotations

import collections

import pytest
import sqlalchemy as sa

from bus import outbox
from bus.consumer import RequeueFailed, requeue
from tests.bus.conftest import record_effect


def test_each_event_is_handled_once_in_per_aggregate_order(bus_env):
    sent = bus_env.emit_round_robin(aggregates=4, per_aggregate=8)
    # and a multi-event transaction (one counter bump for three positions)
    with bus_env.db.transaction() as c:
        sent += outbox.emit_many(c, bus_env.stream, [
            dict(type="Thing", aggregate_type="thing", aggregate_id="agg-9", aggregate_version=v,
                 payload={"v": v}, user_id=1) for v in (1, 2, 3)])
    assert [e.event_seq for e in sent] == list(range(1, len(sent) + 1))  # gapless from 1

    r = bus_env.runner()
    bus_env.pump(r, lambda: len(bus_env.effects()) >= len(sent))
    rows = bus_env.effects()
    assert sorted(x.event_id for x in rows) == sorted(e.event_id for e in sent)
    by_agg = collections.defaultdict(list)
    for x in rows:
        by_agg[x.aggregate_id].append(x.aggregate_version)
    assert set(by_agg) == {"agg-0", "agg-1", "agg-2", "agg-3", "agg-9"}
    for agg, versions in by_agg.items():
        assert versions == sorted(versions), agg
    # nothing more arrives
    r.run_once(timeout=0.3)
    assert len(bus_env.effects()) == len(sent)


def test_delivered_envelope_is_the_emitted_one(bus_env):
    import datetime as dt
    from decimal import Decimal
    seen = []
    ev = bus_env.emit("agg-x", 3, payload={"price": Decimal("1.2500"), "when": dt.datetime(2025, 2, 5, 10, 30, tzinfo=dt.timezone.utc)},
                      user_id=42)
    r = bus_env.runner(handlers={f"{bus_env.context}.Thing": lambda conn, e: seen.append(e)})
    bus_env.pump(r, lambda: seen)
    got = seen[0]
    assert got.to_dict() == ev.to_dict()
    assert got.payload == {"price": "1.2500", "when": "2025-02-05T10:30:00.000Z"}
    assert (got.user_id, got.aggregate_version, got.stream, got.type) == (42, 3, bus_env.stream, "Thing")


def test_redelivery_after_a_crash_before_commit_has_no_second_effect(bus_env):
    sent = bus_env.emit_round_robin(aggregates=2, per_aggregate=5)
    group = f"{bus_env.context}-redeliver"
    first = bus_env.runner(group)
    got = []
    import time
    deadline = time.monotonic() + 30
    while len(got) < len(sent) and time.monotonic() < deadline:
        bus_env.relay_all()
        got += first.consumer.poll(0.2, 500)
    assert len(got) == len(sent)
    first.handle(got)          # the handlers' transactions commit ...
    first.close()              # ... and the process dies before committing the offsets
    assert len(bus_env.effects(group)) == len(sent)

    second = bus_env.runner(group)
    bus_env.pump(second, lambda: second.stats.skipped_duplicates >= len(sent))
    assert second.stats.handled == 0
    rows = bus_env.effects(group)
    assert collections.Counter(x.event_id for x in rows) == {e.event_id: 1 for e in sent}


def test_failing_handler_retries_then_dead_letters_then_requeues(bus_env):
    group = f"{bus_env.context}-flaky"
    state = {"broken": True, "calls": collections.Counter()}
    effect = record_effect(group)

    def handler(conn, ev):
        state["calls"][ev.event_id] += 1
        if ev.payload.get("poison") and state["broken"]:
            raise ValueError("cannot handle this one")
        effect(conn, ev)

    sleeps = []
    good1 = bus_env.emit("a", 1)
    bad = bus_env.emit("b", 1, payload={"poison": True})
    good2 = bus_env.emit("c", 1)
    r = bus_env.runner(group, {f"{bus_env.context}.Thing": handler}, max_attempts=3, backoff=0.01,
                       sleep=sleeps.append)
    bus_env.pump(r, lambda: r.stats.dead_lettered >= 1 and len(bus_env.effects(group)) >= 2)
    assert state["calls"][bad.event_id] == 3            # tried max_attempts times
    assert sleeps == [0.01, 0.02]                       # with exponential backoff in between
    assert {x.event_id for x in bus_env.effects(group)} == {good1.event_id, good2.event_id}

    from bus.outbox import dead_letters as t
    with bus_env.db.transaction() as c:
        dl = c.execute(sa.select(t).where(t.c.consumer_group == group)).fetchall()
    assert len(dl) == 1 and dl[0].event_id == bad.event_id and dl[0].attempts == 3
    assert dl[0].status == "dead" and "cannot handle this one" in dl[0].error
    assert dl[0].seq == bad.event_seq and dl[0].stream == bus_env.stream

    # visible through the CLI
    from app.cli import cli
    out = bus_env.app.test_cli_runner().invoke(cli, ["deadletters", "list"])
    assert out.exit_code == 0, out.output
    line = [ln for ln in out.output.splitlines() if ln.split("\t")[2:3] == [group]]
    assert len(line) == 1 and f"{bus_env.stream}#{bad.event_seq}" in line[0] and "attempts=3" in line[0]

    # redelivery of the dead event does not loop through the handler again
    r.run_once(timeout=0.3)
    assert state["calls"][bad.event_id] == 3

    handlers = {f"{bus_env.context}.Thing": handler}
    with pytest.raises(RequeueFailed):
        requeue(bus_env.db, dl[0].id, handlers)            # still broken: stays dead, attempts+1
    with bus_env.db.transaction() as c:
        row = c.execute(sa.select(t).where(t.c.id == dl[0].id)).first()
    assert (row.status, row.attempts) == ("dead", 4)

    state["broken"] = False
    assert requeue(bus_env.db, dl[0].id, handlers) is True
    assert requeue(bus_env.db, dl[0].id, handlers) is False  # a second requeue is a no-op
    ids = collections.Counter(x.event_id for x in bus_env.effects(group))
    assert ids == {good1.event_id: 1, good2.event_id: 1, bad.event_id: 1}
    out = bus_env.app.test_cli_runner().invoke(cli, ["deadletters", "list", "--all"])
    assert any(ln.split("\t")[1:3] == ["requeued", group] for ln in out.output.splitlines())


def test_batch_handler_isolates_the_bad_event(bus_env):
    from bus.consumer import batch
    group = f"{bus_env.context}-batchy"
    effect = record_effect(group)

    @batch
    def handler(conn, events):
        for ev in events:
            if ev.payload.get("poison"):
                raise ValueError("bad one in the batch")
            effect(conn, ev)

    sent = [bus_env.emit(f"a{i}", 1, payload={"poison": i == 3}) for i in range(6)]
    r = bus_env.runner(group, {f"{bus_env.context}.Thing": handler}, sleep=lambda s: None)
    bus_env.pump(r, lambda: r.stats.dead_lettered >= 1 and len(bus_env.effects(group)) >= 5)
    ids = collections.Counter(x.event_id for x in bus_env.effects(group))
    assert ids == {e.event_id: 1 for i, e in enumerate(sent) if i != 3}


def test_a_crash_while_handling_rewinds_so_nothing_behind_it_is_skipped(bus_env):
    """If even the dead-letter write fails (database down), the batch is handed out again from
    the committed position; a later commit must not jump over the unhandled events."""
    group = f"{bus_env.context}-crashy"
    effect = record_effect(group)

    def handler(conn, ev):
        if ev.payload.get("poison"):
            raise ValueError("poison")
        effect(conn, ev)

    sent = [bus_env.emit(f"a{i % 2}", i + 1, payload={"poison": i == 2}) for i in range(6)]
    r = bus_env.runner(group, {f"{bus_env.context}.Thing": handler}, sleep=lambda s: None)
    real = r._dead_letter
    crashes = []

    def broken_dead_letter(*a, **kw):
        if not crashes:
            crashes.append(1)
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is down"))
        return real(*a, **kw)
    r._dead_letter = broken_dead_letter

    import time
    deadline = time.monotonic() + 30
    while not (r.stats.dead_lettered and len(bus_env.effects(group)) >= 5):
        assert time.monotonic() < deadline, r.stats
        bus_env.relay_all()
        try:
            r.run_once(timeout=0.2)
        except sa.exc.OperationalError:
            pass
    assert crashes == [1]
    ids = collections.Counter(x.event_id for x in bus_env.effects(group))
    assert ids == {e.event_id: 1 for i, e in enumerate(sent) if i != 2}


def test_events_of_other_types_and_streams_are_not_handed_to_the_handler(bus_env):
    seen = []
    bus_env.emit("a", 1, type_="Other")
    mine = bus_env.emit("a", 2, type_="Thing")
    r = bus_env.runner(handlers={f"{bus_env.context}.Thing": lambda c, e: seen.append(e.event_id)})
    bus_env.pump(r, lambda: seen)
    r.run_once(timeout=0.3)
    assert seen == [mine.event_id]
    assert r.stats.ignored >= 1
