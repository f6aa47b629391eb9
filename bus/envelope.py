"""The event envelope: one shape for every event on every topic and SSE stream.

Fields (the seed's plus ours): ``event_id`` (uuid), ``event_seq`` (gapless per stream),
``type`` (past tense, the seed's names: ``PositionCreated``), ``aggregate_type``,
``aggregate_id``, ``aggregate_version``, ``occurred_at`` (market time), ``recorded_at``
(system time), ``user_id``, ``schema_version``, ``payload``; plus ``stream`` (the topic).

On Kafka the key is ``aggregate_id`` (order per aggregate), the value is the envelope as
JSON, and the CloudEvents binary-mode headers are set so generic tooling can read our topics.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid
from typing import Any

from marshmallow import Schema, fields

from bus.sql import to_ms

CE_SPECVERSION = "1.0"


def context_of(stream: str) -> str:
    """``tradelog.events`` -> ``tradelog``: the emitting context of a stream."""
    return stream.split(".", 1)[0]


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    value = to_ms(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(value: str | dt.datetime | None) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return to_ms(value) if value else None
    return to_ms(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))


class JSONEncoder(json.JSONEncoder):
    """Decimal -> string (money is never a float), datetime -> ISO-8601 UTC with ms."""

    def default(self, o):
        if isinstance(o, decimal.Decimal):
            return str(o)
        if isinstance(o, dt.datetime):
            return iso(o)
        if isinstance(o, dt.date):
            return o.isoformat()
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        return super().default(o)


def dumps(value: Any) -> str:
    return json.dumps(value, cls=JSONEncoder, separators=(",", ":"), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Event:
    event_id: str
    event_seq: int
    stream: str
    type: str
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int | None
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    user_id: int | None
    schema_version: int
    payload: dict

    @property
    def context(self) -> str:
        return context_of(self.stream)

    @property
    def qualified_type(self) -> str:
        """What subscriptions name: ``tradelog.PositionClosed``."""
        return f"{self.context}.{self.type}"

    def to_dict(self) -> dict:
        return {
            "event_id": self.event_id,
            "event_seq": self.event_seq,
            "stream": self.stream,
            "type": self.type,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "aggregate_version": self.aggregate_version,
            "occurred_at": iso(self.occurred_at),
            "recorded_at": iso(self.recorded_at),
            "user_id": self.user_id,
            "schema_version": self.schema_version,
            "payload": json.loads(dumps(self.payload)),
        }

    def to_json(self) -> str:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "Event":
        return cls(
            event_id=data["event_id"],
            event_seq=int(data["event_seq"]),
            stream=data["stream"],
            type=data["type"],
            aggregate_type=data["aggregate_type"],
            aggregate_id=str(data["aggregate_id"]),
            aggregate_version=data.get("aggregate_version"),
            occurred_at=parse_time(data["occurred_at"]),
            recorded_at=parse_time(data["recorded_at"]),
            user_id=data.get("user_id"),
            schema_version=int(data.get("schema_version", 1)),
            payload=data.get("payload") or {},
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> "Event":
        return cls.from_dict(json.loads(raw))

    # -- Kafka mapping --------------------------------------------------------------
    def kafka_key(self) -> bytes:
        return self.aggregate_id.encode()

    def kafka_headers(self, source_prefix: str = "tradeloop") -> list[tuple[str, bytes]]:
        """CloudEvents 1.0 binary content mode (Kafka protocol binding) headers."""
        return [
            ("ce_specversion", CE_SPECVERSION.encode()),
            ("ce_id", self.event_id.encode()),
            ("ce_type", f"{source_prefix}.{self.qualified_type}".encode()),
            ("ce_source", f"/{source_prefix}/{self.context}".encode()),
            # CloudEvents "time" is when the occurrence happened: our occurred_at.
            ("ce_time", iso(self.occurred_at).encode()),
            ("ce_subject", f"{self.aggregate_type}/{self.aggregate_id}".encode()),
            ("content-type", b"application/json"),
            ("event_seq", str(self.event_seq).encode()),
        ]


class EventSchema(Schema):
    """The envelope as documented to API, SSE and Kafka consumers."""

    event_id = fields.UUID(required=True)
    event_seq = fields.Integer(required=True, metadata={"description": "gapless, increasing per stream"})
    stream = fields.String(required=True, metadata={"description": "topic, e.g. tradelog.events"})
    type = fields.String(required=True, metadata={"description": "past tense, e.g. PositionCreated"})
    aggregate_type = fields.String(required=True)
    aggregate_id = fields.String(required=True)
    aggregate_version = fields.Integer(allow_none=True)
    occurred_at = fields.String(required=True, metadata={"description": "market time, UTC ISO-8601 with ms"})
    recorded_at = fields.String(required=True, metadata={"description": "system time, UTC ISO-8601 with ms"})
    user_id = fields.Integer(allow_none=True)
    schema_version = fields.Integer(required=True)
    payload = fields.Dict(required=True)
