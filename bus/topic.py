"""A topic: its name, what it carries, and each event type's payload schema; events are
written to it with ``topic.emit(conn, ...)`` in the caller's transaction.

    TOPIC = Topic("notes.events", "Test notes' domain events.", {"NoteCreated": NoteCreated})
    TOPIC.emit(conn, "NoteCreated", aggregate_type="note", aggregate_id=note_id,
               aggregate_version=1, user_id=user_id, payload={"id": note_id, "title": title})

Every argument after the event type is a keyword, the same names as the envelope's fields,
so no two call sites can disagree on an order. An event type the topic does not declare is a
``ValueError`` (what is emitted is what /asyncapi.json documents).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from bus import outbox
from bus.envelope import Event


@dataclasses.dataclass(frozen=True)
class Topic:
    """A topic a plugin publishes: its name, what it carries, and each event type's payload
    schema (a marshmallow Schema class), for /asyncapi.json and downstream consumers."""
    name: str
    description: str
    events: dict[str, Any]  # event type -> marshmallow Schema class
    key: str = "aggregate_id"

    def _check(self, type: str) -> None:
        if type not in self.events:
            raise ValueError(f"{self.name} declares no event type {type!r} "
                             f"(declared: {', '.join(sorted(self.events)) or 'none'})")

    def emit(self, conn: Connection, type: str, *, aggregate_type: str, aggregate_id: str,
             aggregate_version: int | None = None, payload: dict, user_id: int | None,
             occurred_at: dt.datetime | None = None, schema_version: int = 1,
             event_id: str | None = None) -> Event:
        """Write one event of this topic to the outbox in ``conn``'s transaction; return it
        (its payload as every consumer will see it: Decimals as strings, times ISO-8601)."""
        self._check(type)
        return outbox.emit(conn, self.name, type, aggregate_type=aggregate_type, aggregate_id=aggregate_id,
                           aggregate_version=aggregate_version, payload=payload, user_id=user_id,
                           occurred_at=occurred_at, schema_version=schema_version, event_id=event_id)

    def emit_many(self, conn: Connection, specs: Sequence[dict]) -> list[Event]:
        """Several events with one counter bump and one multi-row insert; each spec has the
        keyword arguments of ``emit`` (``type``, ``aggregate_type``, ``aggregate_id``, ...)."""
        for spec in specs:
            self._check(spec["type"])
        return outbox.emit_many(conn, self.name, specs)
