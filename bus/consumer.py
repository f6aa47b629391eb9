"""The handler runner: at-least-once delivery + dedupe by event_id = effectively once.

For each event a group subscribes to, one transaction holds both the handler's writes and a
``(consumer_group, event_id)`` row in ``bus_processed``; a redelivered event finds the row and
is skipped. Offsets are committed to the bus only after those transactions commit, so a crash
anywhere redelivers rather than loses. A handler that keeps failing is retried with backoff,
then recorded in ``bus_dead_letters`` (and sent to the ``dlq.<group>`` topic) — never dropped.

Handlers: ``fn(conn, event)``; a handler with ``fn.batch = True`` gets ``fn(conn, events)``
for a run of consecutive events in one transaction (for high-volume streams).
"""
from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from bus import outbox
from bus.base import Bus, Delivery
from bus.envelope import Event, context_of
from bus.sql import is_duplicate_key, utcnow

log = logging.getLogger(__name__)


def batch(fn: Callable) -> Callable:
    """Mark a handler as taking a list of events in one transaction."""
    fn.batch = True
    return fn


def stream_of(subscription: str) -> tuple[str, str]:
    """``"tradelog.PositionClosed"`` -> (``tradelog.events``, ``tradelog.PositionClosed``);
    ``"mlloop.decisions:DecisionRecorded"`` -> (``mlloop.decisions``, ``mlloop.DecisionRecorded``)."""
    if ":" in subscription:
        stream, type_ = subscription.split(":", 1)
        return stream, f"{context_of(stream)}.{type_}"
    context = subscription.split(".", 1)[0]
    return f"{context}.events", subscription


@dataclasses.dataclass
class Group:
    name: str
    handlers: dict[str, Callable]  # qualified type -> handler
    streams: list[str]

    @classmethod
    def from_subscriptions(cls, name: str, subscriptions: dict[str, Callable]) -> "Group":
        handlers, streams = {}, []
        for key, fn in subscriptions.items():
            stream, qualified = stream_of(key)
            handlers[qualified] = fn
            if stream not in streams:
                streams.append(stream)
        return cls(name, handlers, streams)


@dataclasses.dataclass
class Stats:
    handled: int = 0
    skipped_duplicates: int = 0
    ignored: int = 0
    retries: int = 0
    dead_lettered: int = 0


class Runner:
    """Runs one consumer group: poll -> handle (deduped) -> commit offsets."""

    def __init__(self, db, bus: Bus, group: Group, *, max_attempts: int = 5,
                 backoff: float = 0.2, sleep=time.sleep):
        self.db, self.bus, self.group = db, bus, group
        self.max_attempts, self.backoff, self.sleep = max_attempts, backoff, sleep
        self.consumer = bus.consumer(group.name, group.streams)
        self.stats = Stats()

    def close(self):
        self.consumer.close()

    def run_once(self, timeout: float = 1.0, max_events: int = 500) -> int:
        deliveries = self.consumer.poll(timeout, max_events)
        if not deliveries:
            return 0
        try:
            self.handle(deliveries)
        except BaseException:
            # Could not even record the failure (database down?): hand the whole batch out
            # again from the committed position, or a later commit would skip it.
            self.consumer.rewind()
            raise
        self.consumer.commit(deliveries)
        return len(deliveries)

    def run_forever(self, stop: Callable[[], bool] = lambda: False, timeout: float = 0.5):
        while not stop():
            try:
                self.run_once(timeout)
            except Exception:
                log.exception("consumer group %s: poll/commit failed; retrying", self.group.name)
                self.sleep(1.0)

    # -- handling ------------------------------------------------------------------------
    def handle(self, deliveries: Sequence[Delivery]) -> None:
        i = 0
        while i < len(deliveries):
            ev = deliveries[i].event
            fn = self.group.handlers.get(ev.qualified_type) if ev is not None else None
            if fn is None:
                self.stats.ignored += 1
                i += 1
                continue
            if getattr(fn, "batch", False):
                j = i
                while j < len(deliveries) and deliveries[j].event is not None \
                        and self.group.handlers.get(deliveries[j].event.qualified_type) is fn:
                    j += 1
                self._handle_batch(fn, [d.event for d in deliveries[i:j]])
                i = j
            else:
                self._handle_one(fn, ev)
                i += 1

    def _handle_batch(self, fn, events: list[Event]) -> None:
        try:
            with self.db.transaction() as conn:
                ids = [e.event_id for e in events]
                seen = set(conn.execute(sa.select(outbox.processed.c.event_id).where(
                    outbox.processed.c.consumer_group == self.group.name,
                    outbox.processed.c.event_id.in_(ids))).scalars())
                fresh = [e for e in events if e.event_id not in seen]
                self.stats.skipped_duplicates += len(events) - len(fresh)
                if fresh:
                    now = utcnow()
                    conn.execute(outbox.processed.insert(), [
                        dict(consumer_group=self.group.name, event_id=e.event_id, processed_at=now) for e in fresh])
                    fn(conn, fresh)
                self.stats.handled += len(fresh)
        except Exception:
            # A batch failed as a whole (or raced another instance): fall back to one at a
            # time, so one bad event is isolated, retried and dead-lettered alone.
            log.warning("batch of %d failed in group %s; handling one by one", len(events), self.group.name)
            for e in events:
                self._handle_one(lambda conn, ev: fn(conn, [ev]), e)

    def _handle_one(self, fn, ev: Event) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.db.transaction() as conn:
                    conn.execute(outbox.processed.insert().values(
                        consumer_group=self.group.name, event_id=ev.event_id, processed_at=utcnow()))
                    fn(conn, ev)
                self.stats.handled += 1
                return
            except sa.exc.IntegrityError as exc:
                if is_duplicate_key(exc) and self._already_processed(ev):
                    self.stats.skipped_duplicates += 1
                    return
                error = exc
            except Exception as exc:  # handler failure: retry, then dead-letter
                error = exc
            if attempt >= self.max_attempts:
                self._dead_letter(ev, attempt, error)
                return
            self.stats.retries += 1
            self.sleep(self.backoff * (2 ** (attempt - 1)))

    def _already_processed(self, ev: Event) -> bool:
        with self.db.transaction() as conn:
            return conn.execute(sa.select(outbox.processed.c.event_id).where(
                outbox.processed.c.consumer_group == self.group.name,
                outbox.processed.c.event_id == ev.event_id)).first() is not None

    def _dead_letter(self, ev: Event, attempts: int, error: BaseException) -> None:
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        log.error("dead-lettering %s (%s) in group %s after %d attempts: %s",
                  ev.event_id, ev.qualified_type, self.group.name, attempts, text)
        with self.db.transaction() as conn:
            conn.execute(outbox.dead_letters.insert().values(
                consumer_group=self.group.name, event_id=ev.event_id, stream=ev.stream,
                seq=ev.event_seq, type=ev.type, attempts=attempts, error=text[:4000],
                envelope=ev.to_json(), failed_at=utcnow(), status="dead"))
            # Mark it handled for this group so redelivery does not loop; requeue undoes it.
            conn.execute(outbox.processed.insert().values(
                consumer_group=self.group.name, event_id=ev.event_id, processed_at=utcnow()))
        try:
            self.bus.publish_raw(f"dlq.{self.group.name}", ev.kafka_key(), ev.to_json().encode(),
                                 ev.kafka_headers() + [("error", text[:1000].encode())])
        except Exception:
            log.exception("could not copy dead letter to its topic (the table keeps it)")
        self.stats.dead_lettered += 1


class RequeueFailed(RuntimeError):
    pass


def requeue(db, dead_letter_id: int, handlers: dict[str, Callable]) -> bool:
    """Run a dead letter's handler again now; on success mark it requeued (in the handler's
    transaction, claiming the row first, so two concurrent requeues cannot both apply it).
    On failure the row stays ``dead`` with the new error and attempt count, and
    ``RequeueFailed`` is raised."""
    with db.transaction() as conn:
        row = conn.execute(sa.select(outbox.dead_letters).where(
            outbox.dead_letters.c.id == dead_letter_id)).first()
    if row is None:
        raise KeyError(dead_letter_id)
    if row.status != "dead":
        return False
    ev = Event.from_json(row.envelope)
    fn = handlers.get(ev.qualified_type)
    if fn is None:
        raise LookupError(f"no handler for {ev.qualified_type} in group {row.consumer_group}")
    try:
        with db.transaction() as conn:
            claimed = conn.execute(outbox.dead_letters.update().where(
                outbox.dead_letters.c.id == dead_letter_id, outbox.dead_letters.c.status == "dead")
                .values(status="requeued")).rowcount
            if not claimed:
                return False
            if getattr(fn, "batch", False):
                fn(conn, [ev])
            else:
                fn(conn, ev)
    except Exception as exc:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        with db.transaction() as conn:
            conn.execute(outbox.dead_letters.update().where(outbox.dead_letters.c.id == dead_letter_id)
                         .values(attempts=outbox.dead_letters.c.attempts + 1, error=text[:4000],
                                 failed_at=utcnow()))
        raise RequeueFailed(f"dead letter {dead_letter_id} failed again: {text}") from exc
    return True
