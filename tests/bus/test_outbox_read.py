"""Reading a stream's events back through the bus API: by aggregate and by several aggregates,
scoped to a user (what a plugin reads while its own consumer has not yet caught up)."""
from __future__ import annotations

import uuid

from bus import outbox


def test_read_by_aggregate_ids_is_scoped_to_the_user_and_keeps_stream_order(app_factory):
    app = app_factory(["tests.plugins.notes.plugin"])
    db = app.extensions["tradeloop"].db
    stream = f"read{uuid.uuid4().hex[:8]}.events"
    aggs = [f"agg-{i}" for i in range(4)]
    with db.transaction() as c:
        outbox.ensure_streams(c, [stream])
        for i, agg in enumerate(aggs):
            for user in (1, 2):
                outbox.emit(c, stream, "Thing", aggregate_type="thing", aggregate_id=agg,
                            aggregate_version=1, payload={"i": i, "user": user}, user_id=user)
    with db.transaction() as c:
        got = outbox.read(c, stream, user_id=2, aggregate_ids=[aggs[3], aggs[1], "nope"])
        one = outbox.read(c, stream, user_id=1, aggregate_id=aggs[2])
        none = outbox.read(c, stream, aggregate_ids=[])
    assert [(e.aggregate_id, e.payload) for e in got] == [
        (aggs[1], {"i": 1, "user": 2}), (aggs[3], {"i": 3, "user": 2})]
    assert [e.event_seq for e in got] == sorted(e.event_seq for e in got)
    assert [(e.aggregate_id, e.user_id) for e in one] == [(aggs[2], 1)]
    assert none == []


def test_emit_many_returns_the_events_as_read_back(app_factory):
    """``emit_many`` hands back its events built from the stored rows on first access (no
    parse when the caller ignores them): each equals the event read from the outbox, with
    the payload normalised (Decimal "2.50" stays a string, a datetime becomes ISO with ms)."""
    import datetime as dt
    from decimal import Decimal
    app = app_factory(["tests.plugins.notes.plugin"])
    db = app.extensions["tradeloop"].db
    stream = f"many{uuid.uuid4().hex[:8]}.events"
    when = dt.datetime(2025, 3, 4, 15, 0, 0, 123456, tzinfo=dt.timezone.utc)
    with db.transaction() as c:
        sent = outbox.emit_many(c, stream, [
            dict(type="Thing", aggregate_type="thing", aggregate_id=f"a{i}", aggregate_version=1,
                 user_id=7, occurred_at=when, payload={"price": Decimal("2.50"), "at": when, "i": i})
            for i in range(3)])
        ignored = outbox.emit_many(c, stream, [dict(type="Thing", aggregate_type="thing", aggregate_id="b",
                                                    user_id=7, payload={})])
    with db.read() as c:
        back = outbox.read(c, stream)
    assert len(sent) == 3 and [e.event_seq for e in sent] == [1, 2, 3]
    assert [e.to_dict() for e in sent] + [ignored[0].to_dict()] == [e.to_dict() for e in back]
    assert sent[1].payload == {"price": "2.50", "at": "2025-03-04T15:00:00.123Z", "i": 1}
    assert sent[-1] is sent[2] and sent[1:] == [sent[1], sent[2]]
