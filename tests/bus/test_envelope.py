"""The envelope: fields, schema, JSON encoding and the CloudEvents Kafka mapping."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

from bus.envelope import Event, EventSchema

UTC = dt.timezone.utc


def _event(**kw):
    base = dict(event_id="0b3c8a9e-8f1e-4c0e-9d51-6a1b2c3d4e5f", event_seq=1842, stream="tradelog.events",
                type="PositionAdjusted", aggregate_type="position", aggregate_id="pos-1", aggregate_version=7,
                occurred_at=dt.datetime(2025, 2, 5, 10, 30, 0, 123456, tzinfo=UTC),
                recorded_at=dt.datetime(2025, 2, 5, 10, 30, 1, tzinfo=UTC), user_id=5, schema_version=1,
                payload={"net_debit": Decimal("2.3500"), "legs": [1, 2]})
    base.update(kw)
    return Event(**base)


def test_envelope_json_has_every_field_with_ms_utc_times_and_string_money():
    d = json.loads(_event().to_json())
    assert d == {
        "event_id": "0b3c8a9e-8f1e-4c0e-9d51-6a1b2c3d4e5f", "event_seq": 1842, "stream": "tradelog.events",
        "type": "PositionAdjusted", "aggregate_type": "position", "aggregate_id": "pos-1",
        "aggregate_version": 7, "occurred_at": "2025-02-05T10:30:00.123Z",
        "recorded_at": "2025-02-05T10:30:01.000Z", "user_id": 5, "schema_version": 1,
        "payload": {"net_debit": "2.3500", "legs": [1, 2]}}


def test_roundtrip_and_schema_validation():
    ev = _event()
    back = Event.from_json(ev.to_json())
    assert back.to_dict() == ev.to_dict()
    assert back.occurred_at == dt.datetime(2025, 2, 5, 10, 30, 0, 123000, tzinfo=UTC)
    loaded = EventSchema().load(ev.to_dict())
    assert loaded["event_id"] == uuid.UUID(ev.event_id) and loaded["event_seq"] == 1842
    errors = EventSchema().validate({**ev.to_dict(), "event_seq": "x", "event_id": "nope"})
    assert set(errors) == {"event_seq", "event_id"}
    missing = EventSchema().validate({k: v for k, v in ev.to_dict().items() if k != "aggregate_id"})
    assert "aggregate_id" in missing


def test_kafka_key_is_the_aggregate_id_and_cloudevents_binary_headers_are_set():
    ev = _event(occurred_at=dt.datetime(2025, 2, 5, 9, 0, tzinfo=UTC))
    assert ev.kafka_key() == b"pos-1"
    h = dict(ev.kafka_headers())
    assert h["ce_specversion"] == b"1.0"
    assert h["ce_id"] == ev.event_id.encode()
    assert h["ce_type"] == b"tradeloop.tradelog.PositionAdjusted"
    assert h["ce_source"] == b"/tradeloop/tradelog"
    assert h["ce_subject"] == b"position/pos-1"
    assert h["ce_time"] == b"2025-02-05T09:00:00.000Z"  # when it happened (occurred_at)
    assert h["content-type"] == b"application/json"
    assert h["event_seq"] == b"1842"


def test_qualified_type_names_the_emitting_context():
    assert _event(stream="mlloop.pnl", type="PnlRecorded").qualified_type == "mlloop.PnlRecorded"
