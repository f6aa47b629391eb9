"""The relay: outbox -> bus (Kafka), at-least-once, in stream order.

Per stream it keeps how far it has published in ``bus_cursors`` (name ``relay:<bus>``), reads
``seq > cursor`` in order in batches, publishes a batch and waits for *every* delivery report
(``Bus.publish`` raises ``PublishError`` otherwise), and only then advances the cursor. So:

* killed at any moment (``kill -9``), it resumes from the cursor: the batch in flight is sent
  again — duplicates on the wire, never in effect (consumers dedupe by ``event_id``);
* broker down: batches fail, the cursor stays, rows wait; retries back off up to
  ``max_backoff`` and everything goes once the broker is back;
* broker lost its data (Tansu's memory engine on restart, a deleted topic): when the relay
  has to create a topic it had already published to, it rewinds that stream to 0 and
  republishes it; ``rewind(seq)`` (``tradeloop relay --republish-from SEQ``) does the same by
  hand. Consumers' ``(group, event_id)`` records make the republished events no-ops.

Positions are gapless and commit-ordered (``bus.outbox``), so ``seq > cursor`` never skips a
row that committed late.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from bus import outbox
from bus.base import Bus, PublishError

log = logging.getLogger(__name__)


class Relay:
    def __init__(self, db, bus: Bus, streams: Sequence[str], *, batch_size: int = 2000,
                 idle_wait: float = 0.5, max_backoff: float = 10.0, name: str | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.db, self.bus, self.streams = db, bus, list(dict.fromkeys(streams))
        self.batch_size, self.idle_wait, self.max_backoff = batch_size, idle_wait, max_backoff
        self.name = name or f"relay:{bus.name}"
        self.sleep = sleep
        self.published = 0
        self.failures = 0
        self._wake = threading.Event()
        self._topics_checked = False

    # -- positions ----------------------------------------------------------------------
    def positions(self) -> dict[str, int]:
        with self.db.transaction() as conn:
            return {s: outbox.get_cursor(conn, self.name, s) for s in self.streams}

    def pending(self) -> int:
        """Events written but not yet confirmed by the bus."""
        with self.db.transaction() as conn:
            return sum(max(outbox.head(conn, s) - outbox.get_cursor(conn, self.name, s), 0)
                       for s in self.streams)

    def rewind(self, seq: int = 0, streams: Sequence[str] | None = None) -> None:
        """Move the position of every (or the given) stream back to ``seq``, so everything
        after it is published again (after a broker lost its data)."""
        with self.db.transaction() as conn:
            for s in streams or self.streams:
                if outbox.get_cursor(conn, self.name, s) > seq:
                    outbox.set_cursor(conn, self.name, s, seq)
        log.warning("relay %s: rewound %s to %d", self.name, ", ".join(streams or self.streams), seq)

    # -- publishing -----------------------------------------------------------------------
    def _check_topics(self, refresh: bool) -> None:
        """Create missing topics; a topic that had to be created although we had published to
        it means the broker lost it: republish that stream from the start."""
        ensure = getattr(self.bus, "ensure_topics", None)
        if ensure is None:
            return
        created = ensure(self.streams, refresh=refresh)
        if created:
            positions = self.positions()
            lost = [s for s in created if positions.get(s, 0) > 0]
            if lost:
                log.warning("relay %s: topics %s were missing on the broker; republishing them",
                            self.name, ", ".join(sorted(lost)))
                self.rewind(0, lost)
        self._topics_checked = True

    def publish_batch(self, stream: str) -> int:
        """Publish the next batch of one stream; return how many went (0 = caught up)."""
        with self.db.transaction() as conn:
            after = outbox.get_cursor(conn, self.name, stream)
            events = outbox.read(conn, stream, after, limit=self.batch_size)
        if not events:
            return 0
        self.bus.publish(events)  # returns only when every event is acknowledged
        with self.db.transaction() as conn:
            outbox.advance_cursor(conn, self.name, stream, events[-1].event_seq)
        self.published += len(events)
        return len(events)

    def run_once(self) -> int:
        """Publish everything pending now; return how many events were published. Raises
        ``PublishError`` if the bus refused (nothing is marked sent then)."""
        if not self.bus.needs_relay:
            return 0  # the in-process bus reads the outbox itself
        if not self._topics_checked:
            self._check_topics(refresh=True)
        total = 0
        for stream in self.streams:
            while True:
                n = self.publish_batch(stream)
                total += n
                if n < self.batch_size:
                    break
        return total

    def wake(self, _streams=None) -> None:
        self._wake.set()

    def run_forever(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Publish until ``stop()``; woken at once by commits in this process, else polls every
        ``idle_wait`` seconds. Failures back off exponentially (rows wait in the outbox)."""
        if not self.bus.needs_relay:
            log.info("relay: the %s bus reads the outbox itself; nothing to relay", self.bus.name)
            return
        outbox.add_commit_listener(self.wake)
        backoff = 0.0
        try:
            while not stop():
                self._wake.clear()
                try:
                    n = self.run_once()
                    backoff = 0.0
                except PublishError as exc:
                    self.failures += 1
                    backoff = min(max(backoff * 2, 0.25), self.max_backoff)
                    log.warning("relay %s: publish failed (%s); %d pending, retry in %.2fs",
                                self.name, exc, self._safe_pending(), backoff)
                    self._topics_checked = False  # the broker may have lost topics: look again
                    self.sleep(backoff)
                    continue
                except Exception:
                    self.failures += 1
                    backoff = min(max(backoff * 2, 0.25), self.max_backoff)
                    log.exception("relay %s: failed; retry in %.2fs", self.name, backoff)
                    self.sleep(backoff)
                    continue
                if n == 0:
                    self._wake.wait(self.idle_wait)
        finally:
            outbox.remove_commit_listener(self.wake)

    def _safe_pending(self) -> int:
        try:
            return self.pending()
        except Exception:
            return -1
