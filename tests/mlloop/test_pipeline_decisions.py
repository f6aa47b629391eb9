"""The decisions pipeline end to end: the consumer-kill drill, a small simulated world through
the real service functions, and the same flow over the Kafka broker."""
from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app import auth
from bus.consumer import Group, Runner
from plugins.mlloop import handlers
from plugins.mlloop.service import common as service
from plugins.mlloop.sim import drive as simulation
from plugins.mlloop.tables import (
    daily_performance, ml_decisions, ml_feature_snapshots, ml_labels, pnl_events, tracked_ideas,
)
from tests.mlloop.mlloop_fixtures import setup_context, some_ideas


@pytest.fixture
def app(app_factory):
    return app_factory(["mlloop"])


def _decision_counts(app, user_id):
    with app.extensions["tradeloop"].db.transaction() as c:
        return c.execute(sa.select(ml_decisions.c.id, sa.func.count()).where(ml_decisions.c.user_id == user_id)
                         .group_by(ml_decisions.c.id)).all()


def _snapshot_count(app, user_id):
    with app.extensions["tradeloop"].db.transaction() as c:
        return c.execute(sa.select(sa.func.count()).select_from(ml_feature_snapshots)
                         .where(ml_feature_snapshots.c.user_id == user_id)).scalar()


def test_consumer_killed_mid_batch_leaves_one_record_per_decision(app, new_client, run_consumers):
    cl = new_client(app)
    cid = setup_context(cl)
    run_consumers(app)                                   # nothing of ours pending before the drill
    body = cl.post("/api/ml/score", json={"context_id": cid, "ideas": some_ideas(30)}).json
    ext = app.extensions["tradeloop"]
    group = Group.from_subscriptions("mlloop", handlers.SUBSCRIPTIONS)
    doomed = Runner(ext.db, ext.bus, group)
    deliveries = doomed.consumer.poll(0, 20)             # part of the pending work
    assert deliveries
    doomed.handle(deliveries)                            # rows written and committed ...
    doomed.consumer.rewind()                             # ... then killed before committing offsets
    doomed.close()
    assert 0 < len(_decision_counts(app, cl.user.id)) <= 30
    run_consumers(app)                                   # a fresh runner: redelivery, deduped
    counts = _decision_counts(app, cl.user.id)
    assert len(counts) == 30 and all(n == 1 for _, n in counts)
    assert {i for i, _ in counts} == {i["decision_id"] for i in body["ideas"]}
    # beyond the host's dedupe (another group, or a lost processed record): the unique ids hold
    other = Runner(ext.db, ext.bus, Group.from_subscriptions(f"replay-{uuid.uuid4().hex[:6]}", handlers.SUBSCRIPTIONS))
    while other.run_once(timeout=0, max_events=5000):
        pass
    other.close()
    counts = _decision_counts(app, cl.user.id)
    assert len(counts) == 30 and all(n == 1 for _, n in counts)
    with ext.db.transaction() as c:
        n = c.execute(sa.select(sa.func.count()).select_from(ml_feature_snapshots)
                      .where(ml_feature_snapshots.c.user_id == cl.user.id)).scalar()
    assert n == 30


def test_simulated_world_through_the_service(app, run_consumers):
    """Two simulated days (150 ideas each): every idea decided once, its ledger summing to the
    simulator's own settlement P&L, labelled; daily performance == materialize."""
    ext = app.extensions["tradeloop"]
    with ext.db.transaction() as c:
        user, _ = auth.create_user(c, f"sim_{uuid.uuid4().hex[:8]}")
    summary = simulation.run(ext.db, user.id, days=2, ideas_per_day=150, seed=3, trade_fraction=0.05)
    run_consumers(app)
    assert summary.ideas == 300 and summary.settled == 300 and summary.settlement_mismatches == 0
    assert summary.traded == 16
    with ext.db.transaction() as c:
        def count(table):
            return c.execute(sa.select(sa.func.count()).select_from(table).where(table.c.user_id == user.id)).scalar()
        assert count(ml_decisions) == count(ml_feature_snapshots) == count(tracked_ideas) == count(ml_labels) == 300
        sums = dict(c.execute(sa.select(pnl_events.c.tracked_idea_id, sa.func.sum(pnl_events.c.pnl_delta))
                              .where(pnl_events.c.user_id == user.id).group_by(pnl_events.c.tracked_idea_id)).all())
        settled = dict(c.execute(sa.select(tracked_ideas.c.id, tracked_ideas.c.settlement_pnl)
                                 .where(tracked_ideas.c.user_id == user.id)).all())
        assert len(settled) == 300
        assert all(Decimal(str(sums[k])).quantize(Decimal("0.01")) == v for k, v in settled.items())
        traded = c.execute(sa.select(sa.func.count()).select_from(tracked_ideas).where(
            tracked_ideas.c.user_id == user.id, tracked_ideas.c.trade_id.isnot(None))).scalar()
        assert traded == 16
        before = [dict(r._mapping, updated_at=None) for r in c.execute(
            sa.select(daily_performance).where(daily_performance.c.user_id == user.id).order_by(daily_performance.c.date))]
    assert before and sum(r["trade_count"] for r in before) == 16
    from plugins.mlloop.service import outcomes
    with ext.db.transaction() as c:
        outcomes.materialize(c, user.id)
        after = [dict(r._mapping, updated_at=None) for r in c.execute(
            sa.select(daily_performance).where(daily_performance.c.user_id == user.id).order_by(daily_performance.c.date))]
    assert after == before


def test_decisions_over_kafka(app_factory, new_client, kafka_bootstrap, stack):
    """Score -> outbox -> relay -> Kafka -> consumer -> rows, exactly once, redelivery included.
    The relay starts at the streams' heads (``relay_from_head``): the topics carry this test's
    40 decisions and 40 feature snapshots, not the session's whole history."""
    import time
    from tests.conftest import relay_from_head
    app = app_factory(["mlloop"], KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                      KAFKA_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:8]}.")
    ext = app.extensions["tradeloop"]
    cl = new_client(app)
    cid = setup_context(cl)
    relay = relay_from_head(ext, [service.DECISIONS, service.FEATURES, service.PNL])
    start = relay.positions()
    body = cl.post("/api/ml/score", json={"context_id": cid, "ideas": some_ideas(40)}).json
    runner = Runner(ext.db, ext.bus, Group.from_subscriptions("mlloop", handlers.SUBSCRIPTIONS))
    deadline = time.monotonic() + 60
    try:
        # both streams: the decision rows and their feature snapshots (GET /decisions reads both)
        while len(_decision_counts(app, cl.user.id)) < 40 or _snapshot_count(app, cl.user.id) < 40:
            assert time.monotonic() < deadline, runner.stats
            relay.run_once()
            runner.run_once(timeout=0.5)
        assert relay.published == 80 and runner.stats.handled == 80
        relay.rewind(start[service.DECISIONS], [service.DECISIONS])  # republish the decisions: no-ops
        assert relay.run_once() == 40
        while runner.stats.skipped_duplicates < 40:
            assert time.monotonic() < deadline, runner.stats
            runner.run_once(timeout=0.5)
    finally:
        runner.close()
    assert runner.stats.handled == 80 and runner.stats.skipped_duplicates == 40
    counts = _decision_counts(app, cl.user.id)
    assert len(counts) == 40 and all(n == 1 for _, n in counts)
    assert {i for i, _ in counts} == {i["decision_id"] for i in body["ideas"]}
    d = cl.get(f"/api/ml/decisions/{body['ideas'][0]['decision_id']}").json
    assert d["status"] == "recorded" and d["features"]["feature_set_version"] == "v1.0"
