"""The bus interface every backend implements (in-process and Kafka).

A backend publishes outbox events to topics and hands them to consumer groups. Delivery is
at-least-once: a consumer's position moves only when ``commit`` is called, after the
handler's transaction; a redelivered event is skipped by the runner's dedupe record.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bus.envelope import Event


@dataclasses.dataclass(frozen=True)
class Delivery:
    event: Event | None  # None: an undecodable record (the backend has quarantined a copy)
    # Backend-specific position (Kafka: (topic, partition, offset); local: (stream, seq)).
    position: tuple


class Consumer:
    def poll(self, timeout: float = 1.0, max_events: int = 500) -> list[Delivery]:
        raise NotImplementedError

    def commit(self, deliveries: Sequence[Delivery]) -> None:
        raise NotImplementedError

    def rewind(self) -> None:
        """Forget what was handed out but not committed: the next poll starts again at the
        committed position (called when a batch could not be handled, so nothing behind the
        failure is skipped by a later commit)."""

    def close(self) -> None:
        pass


class Bus:
    #: False when the outbox itself is the log (nothing to relay).
    needs_relay = True
    name = "abstract"

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver events to their topics; return only when every one is acknowledged,
        raise ``PublishError`` otherwise (the caller then keeps them for a later try)."""
        raise NotImplementedError

    def publish_raw(self, topic: str, key: bytes, value: bytes, headers: list | None = None) -> None:
        """Write one record outside the envelope flow (dead-letter topics)."""
        raise NotImplementedError

    def consumer(self, group: str, streams: Sequence[str]) -> Consumer:
        raise NotImplementedError

    def close(self) -> None:
        pass


class PublishError(RuntimeError):
    pass
