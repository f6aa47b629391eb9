"""Server-Sent Events: user-scoped streams that replay, then follow, one topic.

Each message is ``id: <event_seq>`` + ``data: <envelope JSON>`` with no ``event:`` field, so a
browser's ``EventSource.onmessage`` sees every event and resumes with the standard
``Last-Event-ID`` header (``?last_seq=`` works too). Comments (``: heartbeat``) keep proxies
and dead-client detection honest; ``retry:`` sets the reconnect delay.

No gap, no duplicate: a client subscribes to the process's hub *before* replaying from the
outbox, then drops live events at or below the last position it sent. The hub is one greenlet
(thread) per process that reads new outbox rows for all streams in one query when woken — by
a commit in this process, by a Redis pub/sub message from another process, or by a short poll
— and fans them out to the subscribers of that (topic, user).
"""
from __future__ import annotations

import logging
import queue
import threading

from flask import Response, current_app, request

from app import errors
from bus import outbox

log = logging.getLogger(__name__)
def channel(namespace: str) -> str:
    """The Redis pub/sub channel that wakes SSE hubs of one deployment."""
    return f"tradeloop:{namespace}:outbox"
QUEUE_MAX = 10_000


class _Subscriber:
    def __init__(self, topic: str, user_id: int):
        self.topic, self.user_id = topic, user_id
        self.queue: queue.Queue = queue.Queue(QUEUE_MAX)
        self.overflowed = False


class Hub:
    def __init__(self, db, cache, topics: list[str], poll_seconds: float, namespace: str = "default"):
        self.channel = channel(namespace)
        self.db, self.cache, self.topics = db, cache, list(topics)
        self.poll_seconds = poll_seconds
        self.subscribers: dict[tuple[str, int], set[_Subscriber]] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        with db.read() as conn:
            self.positions = {t: outbox.head(conn, t) for t in self.topics}
        outbox.add_commit_listener(self._on_commit)
        self._stop = False
        threading.Thread(target=self._run, name="sse-hub", daemon=True).start()
        if getattr(cache, "name", "") == "redis":
            threading.Thread(target=self._listen_redis, name="sse-redis", daemon=True).start()

    def _on_commit(self, streams):
        if any(s in self.positions for s in streams):
            self.wake.set()

    def _listen_redis(self):
        import redis
        while not self._stop:
            try:
                client = redis.Redis.from_url(self.cache.url, socket_timeout=None, socket_connect_timeout=1)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                for _ in pubsub.listen():
                    self.wake.set()
                    if self._stop:
                        return
            except Exception:
                threading.Event().wait(1.0)  # Redis down: the poll fallback keeps streams going

    def _run(self):
        while not self._stop:
            self.wake.wait(self.poll_seconds)
            self.wake.clear()
            try:
                self.pump()
            except Exception:
                log.exception("SSE hub read failed; retrying")
                threading.Event().wait(0.5)

    def pump(self) -> int:
        with self.db.read() as conn:
            events = outbox.read_many(conn, self.positions, limit=5000)
        for ev in events:
            self.positions[ev.stream] = max(self.positions[ev.stream], ev.event_seq)
            with self.lock:
                subs = list(self.subscribers.get((ev.stream, ev.user_id), ()))
            for sub in subs:
                try:
                    sub.queue.put_nowait(ev)
                except queue.Full:
                    sub.overflowed = True  # the client catches up from the outbox instead
        if len(events) == 5000:
            self.wake.set()
        return len(events)

    def subscribe(self, topic: str, user_id: int) -> _Subscriber:
        sub = _Subscriber(topic, user_id)
        with self.lock:
            self.subscribers.setdefault((topic, user_id), set()).add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self.lock:
            subs = self.subscribers.get((sub.topic, sub.user_id))
            if subs:
                subs.discard(sub)
                if not subs:
                    del self.subscribers[(sub.topic, sub.user_id)]

    def count(self) -> int:
        with self.lock:
            return sum(len(s) for s in self.subscribers.values())

    def close(self):
        self._stop = True
        outbox.remove_commit_listener(self._on_commit)
        self.wake.set()


def format_event(ev) -> str:
    return f"id: {ev.event_seq}\ndata: {ev.to_json()}\n\n"


def last_seen() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_seq") or "0"
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise errors.BadRequest("Last-Event-ID / last_seq must be a non-negative integer",
                                errors={"query": {"last_seq": ["not a non-negative integer"]}})


def stream_response(ext, topic: str, user_id: int) -> Response:
    after = last_seen()
    cfg = current_app.config
    heartbeat, retry_ms = float(cfg["SSE_HEARTBEAT_SECONDS"]), int(cfg["SSE_RETRY_MS"])
    hub = ext.hub()
    sub = hub.subscribe(topic, user_id)
    db = ext.db

    def replay(sent: int):
        while True:
            with db.read() as conn:
                events = outbox.read(conn, topic, sent, user_id=user_id, limit=1000)
            for ev in events:
                yield ev
            if len(events) < 1000:
                return
            sent = events[-1].event_seq

    def generate():
        sent = after
        try:
            yield f"retry: {retry_ms}\n: connected to {topic}\n\n"
            for ev in replay(sent):
                sent = ev.event_seq
                yield format_event(ev)
            while True:
                if sub.overflowed:
                    sub.overflowed = False
                    for ev in replay(sent):
                        sent = ev.event_seq
                        yield format_event(ev)
                try:
                    ev = sub.queue.get(timeout=heartbeat)
                except queue.Empty:
                    yield ": heartbeat\n\n"
                    continue
                if ev.event_seq <= sent:
                    continue
                sent = ev.event_seq
                yield format_event(ev)
        finally:
            hub.unsubscribe(sub)

    return Response(generate(), mimetype="text/event-stream", headers={
        # no-cache + X-Accel-Buffering: proxies (nginx) must neither cache nor buffer the
        # stream. (No "Connection" header: it is hop-by-hop, which WSGI apps may not set.)
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
