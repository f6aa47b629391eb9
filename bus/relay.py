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

One relay at a time per stream set: a relay publishes only while it holds the lease
``<name>:<streams>`` (``bus.lease``, a row in the shared database, ``lease_ttl`` seconds, renewed
by a background thread every ttl/3). A second relay started for the same streams waits,
polling, and takes over within ``lease_ttl`` once the first stops renewing (killed, hung on a
dead database) or at once when it stops cleanly (it releases the lease). The cursor only moves
in a transaction that re-checks the lease under a row lock (a fencing check), so a relay that
lost its lease while blocked in a publish never moves the position past the new leader's.
``run_once`` takes the lease for its own run and gives it back (0 when another relay holds it).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from bus import outbox
from bus.base import Bus, PublishError
from bus.lease import Lease

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another relay holds the lease for these streams (this one must not publish)."""


class Relay:
    def __init__(self, db, bus: Bus, streams: Sequence[str], *, batch_size: int = 2000,
                 idle_wait: float = 0.5, max_backoff: float = 10.0, name: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, lease_ttl: float = 10.0,
                 holder: str | None = None):
        self.db, self.bus, self.streams = db, bus, list(dict.fromkeys(streams))
        self.batch_size, self.idle_wait, self.max_backoff = batch_size, idle_wait, max_backoff
        self.name = name or f"relay:{bus.name}"
        self.sleep = sleep
        self.published = 0
        self.failures = 0
        self._wake = threading.Event()
        self._topics_checked = False
        key = hashlib.sha256(",".join(sorted(self.streams)).encode()).hexdigest()[:16]
        self.lease = Lease(db, f"{self.name}:{key}", ttl=lease_ttl, holder=holder)
        self._leading = False

    # -- leadership -----------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        """Holding an unexpired lease right now (as far as this process knows)."""
        from bus.sql import utcnow
        return self._leading and self.lease.held_until is not None and self.lease.held_until > utcnow()

    def _take_lease(self) -> bool:
        try:
            self._leading = self.lease.acquire()
        except Exception:
            log.exception("relay %s: could not read or renew its lease", self.name)
            self._leading = False
        return self._leading

    def _renew_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.lease.ttl / 3):
            if self._leading and not self._take_lease():
                log.warning("relay %s: lost its lease to %s; stopped publishing", self.name,
                            self.lease.current_holder())

    def _give_up_lease(self) -> None:
        if self._leading:
            self._leading = False
            try:
                self.lease.release()
            except Exception:
                log.exception("relay %s: could not release its lease (it expires by itself)", self.name)

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
        if not self.is_leader:
            raise LeaseLost(f"relay {self.name}: not the leader for {stream}")
        self.bus.publish(events)  # returns only when every event is acknowledged
        with self.db.transaction() as conn:
            if not self.lease.holds(conn):  # fencing: a new leader owns the position now
                self._leading = False
                raise LeaseLost(f"relay {self.name}: lost the lease while publishing {stream}")
            outbox.advance_cursor(conn, self.name, stream, events[-1].event_seq)
        self.published += len(events)
        return len(events)

    def run_once(self) -> int:
        """Publish everything pending now; return how many events were published (0 when
        another relay holds the lease). Raises ``PublishError`` if the bus refused (nothing is
        marked sent then)."""
        if not self.bus.needs_relay:
            return 0  # the in-process bus reads the outbox itself
        if self._leading:
            return self._publish_pending()
        if not self._take_lease():
            log.info("relay %s: another relay (%s) holds the lease; not publishing", self.name,
                     self.lease.current_holder())
            return 0
        try:
            return self._publish_pending()
        finally:
            self._give_up_lease()

    def _publish_pending(self) -> int:
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
        renewing = threading.Event()
        threading.Thread(target=self._renew_forever, args=(renewing,), name="relay-lease", daemon=True).start()
        waiting_logged = False
        try:
            while not stop():
                self._wake.clear()
                if not self._leading:
                    if not self._take_lease():
                        if not waiting_logged:
                            log.warning("relay %s: %s holds the lease; waiting to take over", self.name,
                                        self.lease.current_holder())
                            waiting_logged = True
                        self._wake.wait(min(self.lease.ttl / 3, 2.0))
                        continue
                    log.info("relay %s: took the lease (%s)", self.name, self.lease.holder)
                    waiting_logged = False
                    self._topics_checked = False
                try:
                    n = self._publish_pending()
                    backoff = 0.0
                except LeaseLost as exc:
                    log.warning("%s; waiting to take over again", exc)
                    self._leading = False
                    continue
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
            renewing.set()
            outbox.remove_commit_listener(self.wake)
            self._give_up_lease()

    def _safe_pending(self) -> int:
        try:
            return self.pending()
        except Exception:
            return -1
