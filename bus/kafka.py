"""The Kafka backend (confluent-kafka): Redpanda/Kafka in production, Tansu in tests.

Producer: idempotent (``enable.idempotence``, ``acks=all``), never auto-creates topics (the
relay creates them, so it can tell when a broker lost one and republish), and ``publish``
returns only after *every* delivery report of the batch has arrived, raising ``PublishError``
if any failed. A fatal producer error (a broker that restarted without its state answers
``UNKNOWN_PRODUCER_ID``) replaces the producer; the caller retries the batch.

Consumer: one ``confluent_kafka.Consumer`` per group, ``enable.auto.commit=false``, earliest
reset, offsets committed synchronously (offset + 1 per partition) only after the runner's
transactions. ``rewind`` seeks back to the committed offsets when a batch could not be handled,
so nothing behind a failure is skipped. Consumer-group timings follow DESIGN.md "Runs on":
``session.timeout.ms=6000, heartbeat.interval.ms=1000`` (~3 s first assignment instead of
~23 s), ``fetch.wait.max.ms=10`` and ``poll()`` for low latency.

Topic name = ``topic_prefix + stream``; key = ``aggregate_id``; value = envelope JSON;
CloudEvents binary-mode headers (``Event.kafka_headers``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

from confluent_kafka import Consumer as _KConsumer
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bus.base import Bus, Consumer, Delivery, PublishError
from bus.envelope import Event

log = logging.getLogger(__name__)

PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,  # flush() sends at once regardless; this only helps streaming produce
    "compression.type": "lz4",
    # A batch's outcome must be known within this time, so a down broker yields an error
    # report (rows stay pending) instead of an ever-growing local queue.
    "message.timeout.ms": 15000,
    "allow.auto.create.topics": False,
    "reconnect.backoff.max.ms": 2000,
    "queue.buffering.max.messages": 500000,
}

CONSUMER_DEFAULTS = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.wait.max.ms": 10,
    "topic.metadata.refresh.interval.ms": 5000,
    "reconnect.backoff.max.ms": 2000,
    "allow.auto.create.topics": False,
}


class KafkaConsumer(Consumer):
    def __init__(self, bus: "KafkaBus", group: str, streams: Sequence[str]):
        self.bus, self.group, self.streams = bus, group, list(streams)
        self.topics = [bus.topic(s) for s in self.streams]
        bus.ensure_topics(self.streams)
        conf = {"bootstrap.servers": bus.bootstrap, "group.id": group,
                "client.id": f"{bus.client_id}-{group}", **CONSUMER_DEFAULTS, **bus.consumer_config}
        self.kc = _KConsumer(conf)
        self.kc.subscribe(self.topics)

    def poll(self, timeout: float = 1.0, max_events: int = 500) -> list[Delivery]:
        out: list[Delivery] = []
        deadline = time.monotonic() + max(timeout, 0)
        wait = timeout
        while len(out) < max_events:
            msg = self.kc.poll(max(wait, 0))
            if msg is None:
                if out or time.monotonic() >= deadline:
                    break
                wait = deadline - time.monotonic()
                continue
            if msg.error():
                if msg.error().code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    log.warning("consumer %s: %s", self.group, msg.error())
                if not out and time.monotonic() < deadline:
                    wait = deadline - time.monotonic()
                    continue
                break
            position = (msg.topic(), msg.partition(), msg.offset())
            try:
                ev = Event.from_json(msg.value())
            except Exception as exc:  # a poison record: keep a copy, never drop it silently
                self._quarantine(msg, exc)
                out.append(Delivery(None, position))
                wait = 0
                continue
            out.append(Delivery(ev, position))
            wait = 0  # drain what is already fetched, then return
        return out

    def _quarantine(self, msg, exc) -> None:
        log.error("consumer %s: undecodable record %s[%d]@%d copied to dlq.%s: %s",
                  self.group, msg.topic(), msg.partition(), msg.offset(), self.group, exc)
        self.bus.publish_raw(f"dlq.{self.group}", msg.key() or b"", msg.value() or b"",
                             list(msg.headers() or []) + [("error", str(exc)[:1000].encode())])

    def commit(self, deliveries: Sequence[Delivery]) -> None:
        top: dict[tuple[str, int], int] = {}
        for d in deliveries:
            topic, partition, offset = d.position
            top[(topic, partition)] = max(top.get((topic, partition), -1), offset)
        if top:
            self.kc.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in top.items()],
                           asynchronous=False)

    def rewind(self) -> None:
        """Seek every assigned partition back to its committed offset (what a restarted
        consumer would resume from)."""
        assigned = self.kc.assignment()
        if not assigned:
            return
        for tp in self.kc.committed(assigned, timeout=10):
            offset = tp.offset if tp.offset >= 0 else -2  # OFFSET_BEGINNING
            try:
                self.kc.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                log.warning("consumer %s: seek %s[%d] failed: %s", self.group, tp.topic, tp.partition, exc)

    def close(self) -> None:
        try:
            self.kc.close()
        except Exception:
            pass


class KafkaBus(Bus):
    needs_relay = True
    name = "kafka"

    def __init__(self, bootstrap: str, *, client_id: str = "tradeloop", topic_prefix: str = "",
                 partitions: int = 3, replication: int = 1, producer_config: dict | None = None,
                 consumer_config: dict | None = None, delivery_timeout: float | None = None):
        self.bootstrap, self.client_id, self.topic_prefix = bootstrap, client_id, topic_prefix or ""
        self.partitions, self.replication = partitions, replication
        self.producer_config = {**PRODUCER_DEFAULTS, **(producer_config or {})}
        self.consumer_config = dict(consumer_config or {})
        # flush() waits this long: longer than message.timeout.ms, so every report arrives.
        self.delivery_timeout = delivery_timeout or self.producer_config["message.timeout.ms"] / 1000 + 5
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._known: set[str] = set()
        self._lock = threading.RLock()

    # -- names and topics -------------------------------------------------------------
    def topic(self, stream: str) -> str:
        return self.topic_prefix + stream

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "client.id": f"{self.client_id}-admin"})
        return self._admin

    def ensure_topics(self, streams: Iterable[str], *, refresh: bool = False, timeout: float = 10.0) -> set[str]:
        """Create missing topics (by stream name); return the streams whose topic had to be
        created. ``refresh`` asks the broker again instead of trusting what we saw before
        (after a publish failure: a restarted memory-backed broker has lost its topics)."""
        streams = list(dict.fromkeys(streams))
        with self._lock:
            if not refresh and all(self.topic(s) in self._known for s in streams):
                return set()
            try:
                existing = set(self.admin.list_topics(timeout=timeout).topics)
            except KafkaException as exc:
                raise PublishError(f"broker unreachable: {exc}") from exc
            self._known = {t for t in self._known if t in existing} | existing
            missing = [s for s in streams if self.topic(s) not in existing]
            created = set()
            if missing:
                futures = self.admin.create_topics(
                    [NewTopic(self.topic(s), self.partitions, self.replication) for s in missing],
                    operation_timeout=timeout, request_timeout=timeout)
                by_topic = {self.topic(s): s for s in missing}
                for topic, fut in futures.items():
                    try:
                        fut.result(timeout)
                        created.add(by_topic[topic])
                    except KafkaException as exc:
                        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                            raise PublishError(f"could not create topic {topic}: {exc}") from exc
                    self._known.add(topic)
                if created:
                    self._wait_visible([self.topic(s) for s in created], timeout)
            return created

    def _wait_visible(self, topics: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            md = self.admin.list_topics(timeout=timeout).topics
            if all(t in md and md[t].partitions and not md[t].error for t in topics):
                return
            time.sleep(0.05)

    # -- producing --------------------------------------------------------------------
    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self.bootstrap, "client.id": self.client_id,
                                       **self.producer_config})
        return self._producer

    def _reset_producer(self) -> None:
        old, self._producer = self._producer, None
        if old is not None:
            try:
                old.purge()
                old.flush(0)
            except Exception:
                pass

    def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        self.ensure_topics({e.stream for e in events})
        self._produce([(self.topic(e.stream), e.kafka_key(), e.to_json().encode(), e.kafka_headers())
                       for e in events])

    def publish_raw(self, topic: str, key: bytes, value: bytes, headers: list | None = None) -> None:
        self.ensure_topics([topic])
        self._produce([(self.topic(topic), key, value, headers or [])])

    def _produce(self, records) -> None:
        with self._lock:
            producer = self._get_producer()
            failures: list = []
            pending = [0]

            def report(err, _msg):
                pending[0] -= 1
                if err is not None:
                    failures.append(err)
            try:
                for topic, key, value, headers in records:
                    while True:
                        try:
                            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                            pending[0] += 1
                            break
                        except BufferError:
                            producer.poll(0.05)  # local queue full: let reports drain
                remaining = producer.flush(self.delivery_timeout)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if getattr(err, "fatal", lambda: False)():
                    log.warning("producer fatal error (%s): replacing the producer", err)
                    self._reset_producer()
                raise PublishError(str(exc)) from exc
            fatal = [e for e in failures if e.fatal()]
            if fatal or remaining:
                self._reset_producer()
            if failures or remaining or pending[0]:
                first = failures[0] if failures else "delivery reports missing"
                raise PublishError(f"{len(failures)} of {len(records)} records failed, "
                                   f"{remaining} unconfirmed: {first}")

    # -- consuming --------------------------------------------------------------------
    def consumer(self, group: str, streams: Sequence[str]) -> KafkaConsumer:
        return KafkaConsumer(self, group, streams)

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.flush(5)
            except Exception:
                pass
            self._producer = None
