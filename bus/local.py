"""The in-process bus: the embedded default and the fast test backend.

``db`` is the host's ``Database`` (``transaction()`` for writes, ``read()`` for read-only
transactions). It is a real, durable implementation, not a mock: the outbox table *is* the log. A consumer
group's position per stream lives in ``bus_cursors`` (name ``group:<group>``), so a restart
resumes where the group left off, and nothing needs relaying. Wake-ups come from the outbox's
commit listener (same process) with a short poll as the fallback (other processes).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

from bus import outbox
from bus.base import Bus, Consumer, Delivery


class _Wakeup:
    def __init__(self):
        self.cond = threading.Condition()
        self.generation = 0
        outbox.add_commit_listener(self.fire)

    def fire(self, _streams):
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self.cond:
            if self.generation == seen:
                self.cond.wait(timeout)
            return self.generation

    def close(self):
        outbox.remove_commit_listener(self.fire)


class LocalConsumer(Consumer):
    def __init__(self, bus: "LocalBus", group: str, streams: Sequence[str]):
        self.bus, self.group, self.streams = bus, group, list(streams)
        self.cursor_name = f"group:{group}"
        self._gen = bus.wakeup.generation
        self._inflight: dict[str, int] = {}

    def poll(self, timeout: float = 1.0, max_events: int = 500) -> list[Delivery]:
        gen = self.bus.wakeup.generation
        # Read-only: on SQLite a reader never waits for (or blocks) a writer.
        with self.bus.db.read() as conn:
            events = outbox.read_many(conn, self._positions_in(conn), limit=max_events)
        if not events and timeout > 0:
            self.bus.wakeup.wait(gen, timeout)
            with self.bus.db.read() as conn:
                events = outbox.read_many(conn, self._positions_in(conn), limit=max_events)
        for ev in events:
            self._inflight[ev.stream] = max(self._inflight.get(ev.stream, 0), ev.event_seq)
        return [Delivery(ev, (ev.stream, ev.event_seq)) for ev in events]

    def _positions_in(self, conn) -> dict[str, int]:
        pos = {s: outbox.get_cursor(conn, self.cursor_name, s) for s in self.streams}
        for s, seq in self._inflight.items():
            pos[s] = max(pos[s], seq)
        return pos

    def commit(self, deliveries: Sequence[Delivery]) -> None:
        top: dict[str, int] = {}
        for d in deliveries:
            stream, seq = d.position
            top[stream] = max(top.get(stream, 0), seq)
        if not top:
            return
        with self.bus.db.transaction() as conn:
            for stream, seq in top.items():
                if seq > outbox.get_cursor(conn, self.cursor_name, stream):
                    outbox.set_cursor(conn, self.cursor_name, stream, seq)

    def rewind(self) -> None:
        """Forget what was handed out but not committed (as a restarted process would)."""
        self._inflight.clear()


class LocalBus(Bus):
    needs_relay = False
    name = "local"

    def __init__(self, db):
        self.db = db
        self.wakeup = _Wakeup()
        self.raw: list[tuple] = []  # dead-letter copies (the DB table is the durable record)

    def publish(self, events) -> None:
        return None  # the outbox is the log

    def publish_raw(self, topic, key, value, headers=None) -> None:
        self.raw.append((topic, key, value, headers))

    def consumer(self, group, streams) -> LocalConsumer:
        return LocalConsumer(self, group, streams)

    def close(self) -> None:
        self.wakeup.close()
