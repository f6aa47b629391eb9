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


def test_decision_events_carry_features_by_reference_and_old_ones_still_decode(app, new_client, run_consumers):
    """``DecisionRecorded`` v2 names its features by ``feature_snapshot_id`` (the
    ``FeatureSnapshotTaken`` of the same request carries them once); a v1 event, which also
    embedded ``features``/``extra_features``, decodes to the same ``ml_decisions`` row, and the
    consumer writes a v1 event it meets in a stream."""
    import dataclasses

    from bus import outbox
    from plugins.mlloop.service.decisions import decision_row, write_decisions
    cl = new_client(app)
    cid = setup_context(cl)
    body = cl.post("/api/ml/score", json={"context_id": cid, "ideas": some_ideas(3)}).json
    ids = [i["decision_id"] for i in body["ideas"]]
    db = app.extensions["tradeloop"].db
    with db.read() as c:
        decided = outbox.read(c, service.DECISIONS, user_id=cl.user.id, aggregate_ids=ids)
        snaps = {e.payload["decision_id"]: e for e in outbox.read(c, service.FEATURES, user_id=cl.user.id)}
    assert sorted(e.aggregate_id for e in decided) == sorted(ids)
    for ev in decided:
        assert ev.schema_version == 2 and "features" not in ev.payload and "replayed" not in ev.payload
        assert ev.payload["feature_snapshot_id"] == snaps[ev.aggregate_id].aggregate_id
    run_consumers(app)
    v2 = decided[0]
    feats = {k: v for k, v in snaps[v2.aggregate_id].payload.items()
             if k not in ("feature_snapshot_id", "decision_id", "tracked_idea_id", "idea_id", "extra_features")}
    v1 = dataclasses.replace(v2, schema_version=1, payload={**v2.payload, "features": feats, "extra_features": None})
    assert decision_row(v1) == decision_row(v2)
    with db.read() as c:  # what the consumer wrote from v2 is what v1 decodes to
        stored = dict(c.execute(sa.select(ml_decisions).where(ml_decisions.c.id == v2.aggregate_id)).one()._mapping)
    assert {k: stored[k] for k in ("original_score", "final_score", "model_id", "feature_snapshot_id", "idea_id")} == \
        {k: decision_row(v1)[k] for k in ("original_score", "final_score", "model_id", "feature_snapshot_id", "idea_id")}
    with db.transaction() as c:  # a v1 event of a decision not yet recorded is written like any other
        fresh = dataclasses.replace(v1, aggregate_id="v1-" + v1.aggregate_id[3:],
                                    payload={**v1.payload, "decision_id": "v1-" + v1.aggregate_id[3:],
                                             "decision_key": "v1" + v1.payload["decision_key"][2:]})
        assert write_decisions(c, [fresh]) == 1
        got = c.execute(sa.select(ml_decisions.c.idea_id, ml_decisions.c.feature_snapshot_id)
                        .where(ml_decisions.c.id == fresh.aggregate_id)).one()
    assert tuple(got) == (v1.payload["idea_id"], v1.payload["feature_snapshot_id"])
