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

Limits (docs/security.md): at most ``SSE_MAX_STREAMS_PER_USER`` open streams per user (429
with Retry-After beyond it; counted across processes in Redis when there is one, else per
process); replay is read in pages of ``SSE_REPLAY_PAGE`` events, a few pages at a time per
process, yielding to other requests between pages, so one client replaying a long history
cannot starve the others. Every ``SSE_AUTH_RECHECK_SECONDS`` a stream checks that its
credential still holds (token not revoked, session not ended) and closes otherwise.

Reset: a ``Last-Event-ID`` beyond the stream's head (the database was restored from a backup,
or the id is from another deployment) is answered with one ``event: reset`` message, ``id: 0``
and ``data: {"reason": "ahead_of_stream", "last_event_id": L, "head": H}``, then the whole
stream from the start: a client drops what it derived from the stream and rebuilds from what
follows (the console does).

Shutdown: on SIGTERM every open stream is sent ``retry: SSE_SHUTDOWN_RETRY_MS`` and closed at
once, so a gunicorn worker stops in about a second instead of waiting out its graceful
timeout, and browsers reconnect (to another worker) after that delay with Last-Event-ID.
"""
from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
import uuid

from flask import Response, current_app, request

from app import errors
from bus import outbox

log = logging.getLogger(__name__)


def channel(namespace: str) -> str:
    """The Redis pub/sub channel that wakes SSE hubs of one deployment."""
    return f"tradeloop:{namespace}:outbox"


QUEUE_MAX = 10_000
SHUTDOWN_RETRY_MS = 1000
_CLOSE = object()  # queued to a subscriber: the process is stopping
_shutting_down = threading.Event()
_hubs: "set[Hub]" = set()
REPLAY_SLOTS = 2  # replay pages read and formatted at once in one process
_replay_semaphore = None


def _replay_slots():
    """Created on first use, after a gevent server has monkey-patched threading."""
    global _replay_semaphore
    if _replay_semaphore is None:
        _replay_semaphore = threading.BoundedSemaphore(REPLAY_SLOTS)
    return _replay_semaphore


def shutting_down() -> bool:
    return _shutting_down.is_set()


def begin_shutdown() -> None:
    """Close every open stream of this process now (each is sent a ``retry:`` hint first)."""
    _shutting_down.set()
    for hub in list(_hubs):
        hub.close_streams()


_handler_installed = False


def _install_sigterm_handler() -> None:
    """Chain a SIGTERM handler (gunicorn's worker installs its own first; ``tradeloop serve``
    has none) that closes the open streams, so the server's graceful stop has nothing to wait
    for. Only possible from the main thread (a gevent worker's greenlets are in it)."""
    global _handler_installed
    if _handler_installed:
        return  # (signal.signal itself refuses to run outside the main OS thread: ValueError)
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, AttributeError):
        return

    def on_sigterm(signum, frame):
        begin_shutdown()
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, on_sigterm)
        _handler_installed = True
    except ValueError:
        pass


class Restarting(errors.DomainError):
    """This server process is stopping; reconnect (another one will serve you)."""
    status = 503
    code = "restarting"
    headers = {"Retry-After": "1"}


class _Subscriber:
    def __init__(self, topic: str, user_id: int):
        self.topic, self.user_id = topic, user_id
        self.queue: queue.Queue = queue.Queue(QUEUE_MAX)
        self.overflowed = False
        self.closing = False


class Hub:
    def __init__(self, db, cache, topics: list[str], poll_seconds: float, namespace: str = "default"):
        self.channel = channel(namespace)
        self.namespace = namespace
        self.streams_per_user: dict[int, int] = {}
        self.db, self.cache, self.topics = db, cache, list(topics)
        self.poll_seconds = poll_seconds
        self.subscribers: dict[tuple[str, int], set[_Subscriber]] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        with db.read() as conn:
            self.positions = {t: outbox.head(conn, t) for t in self.topics}
        outbox.add_commit_listener(self._on_commit)
        _hubs.add(self)
        _install_sigterm_handler()
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
        _hubs.discard(self)
        outbox.remove_commit_listener(self._on_commit)
        self.wake.set()

    def close_streams(self) -> None:
        with self.lock:
            subs = [sub for group in self.subscribers.values() for sub in group]
        for sub in subs:
            sub.closing = True
            try:
                sub.queue.put_nowait(_CLOSE)
            except queue.Full:
                pass  # its loop checks ``closing`` at the next wake-up

    # -- the per-user cap ----------------------------------------------------------------
    def _slots_key(self, user_id: int) -> str:
        return f"tradeloop:{self.namespace}:sse:{user_id}"

    def open_slot(self, user_id: int, cap: int, lease: float) -> str | None:
        """Claim one of the user's ``cap`` stream slots; None when all are taken. Across
        processes in Redis (a sorted set of stream ids scored by lease expiry, renewed by each
        stream's heartbeat, so a crashed process's slots free themselves); per process when
        there is no Redis or it is down."""
        slot = uuid.uuid4().hex
        client = getattr(self.cache, "client", None)
        if client is not None:
            from app.cache import CacheUnavailable
            try:
                ok = self.cache._call(_redis_claim, client, self._slots_key(user_id), slot, cap, lease)
                return slot if ok else None
            except CacheUnavailable:
                pass
        with self.lock:
            if self.streams_per_user.get(user_id, 0) >= cap:
                return None
            self.streams_per_user[user_id] = self.streams_per_user.get(user_id, 0) + 1
        return "local:" + slot

    def renew_slot(self, user_id: int, slot: str, lease: float) -> None:
        client = getattr(self.cache, "client", None)
        if client is None or slot.startswith("local:"):
            return
        from app.cache import CacheUnavailable
        try:
            self.cache._call(client.zadd, self._slots_key(user_id), {slot: time.time() + lease})
        except CacheUnavailable:
            pass

    def close_slot(self, user_id: int, slot: str) -> None:
        if slot.startswith("local:"):
            with self.lock:
                n = self.streams_per_user.get(user_id, 0) - 1
                if n > 0:
                    self.streams_per_user[user_id] = n
                else:
                    self.streams_per_user.pop(user_id, None)
            return
        from app.cache import CacheUnavailable
        try:
            self.cache._call(self.cache.client.zrem, self._slots_key(user_id), slot)
        except CacheUnavailable:
            pass  # the lease lapses by itself


_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _redis_claim(client, key: str, slot: str, cap: int, lease: float) -> bool:
    now = time.time()
    return bool(client.eval(_CLAIM, 1, key, now, cap, now + lease, slot, int(lease) + 60))


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
    """The SSE response for one user's stream of ``topic``: 429 when the user has
    ``SSE_MAX_STREAMS_PER_USER`` open; else replay after Last-Event-ID (in pages), then live."""
    from flask import g

    from app.auth import still_authenticated
    from app.ratelimit import TooManyRequests
    after = last_seen()
    cfg = current_app.config
    heartbeat, retry_ms = float(cfg["SSE_HEARTBEAT_SECONDS"]), int(cfg["SSE_RETRY_MS"])
    page = max(1, int(cfg.get("SSE_REPLAY_PAGE", 500)))
    recheck = float(cfg.get("SSE_AUTH_RECHECK_SECONDS", 30.0))
    cap = int(cfg.get("SSE_MAX_STREAMS_PER_USER", 20))
    lease = max(heartbeat * 3, 30.0)
    auth = getattr(g, "auth", None)
    idle = int(cfg["SESSION_IDLE_TIMEOUT_SECONDS"])
    if shutting_down():
        raise Restarting()
    hub = ext.hub()
    slot = hub.open_slot(user_id, cap, lease)
    if slot is None:
        raise TooManyRequests(f"you already have {cap} open event streams (SSE_MAX_STREAMS_PER_USER); close one "
                              "or share one per browser", max(1, retry_ms // 1000))
    try:
        sub = hub.subscribe(topic, user_id)
        db = ext.db
        with db.read() as conn:
            head = outbox.head(conn, topic)
    except BaseException:
        hub.close_slot(user_id, slot)
        raise

    def replay(sent: int):
        """(last seq, the page formatted as one chunk) per page. Reading and formatting a page
        happen while holding one of the process's few replay slots, so however many streams
        replay at once, only that many are busy at a time and other requests keep their turn."""
        while True:
            with _replay_slots():
                with db.read() as conn:
                    events = outbox.read(conn, topic, sent, user_id=user_id, limit=page)
                chunk = "".join(format_event(ev) for ev in events)
            if events:
                yield events[-1].event_seq, chunk
            if len(events) < page:
                return
            sent = events[-1].event_seq
            time.sleep(0)  # let other requests run between pages (a gevent yield)

    def generate():
        sent = after
        next_check = time.monotonic() + recheck
        try:
            yield f"retry: {retry_ms}\n: connected to {topic}\n\n"
            if after > head:
                yield ("event: reset\nid: 0\ndata: " + json.dumps(
                    {"reason": "ahead_of_stream", "last_event_id": after, "head": head}) + "\n\n")
                sent = 0
            for last, chunk in replay(sent):
                if sub.closing:
                    break
                sent = last
                yield chunk
            while not sub.closing:
                if sub.overflowed:
                    sub.overflowed = False
                    for last, chunk in replay(sent):
                        sent = last
                        yield chunk
                try:
                    ev = sub.queue.get(timeout=heartbeat)
                except queue.Empty:
                    ev = None
                if ev is _CLOSE or sub.closing:
                    break
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + recheck
                    try:
                        alive = still_authenticated(db, auth, idle_seconds=idle)
                    except Exception:
                        alive = True  # the database is briefly unreachable: check again next time
                    if not alive:
                        yield ": signed out (token revoked or session ended)\n\n"
                        return
                if ev is None:
                    hub.renew_slot(user_id, slot, lease)
                    yield ": heartbeat\n\n"
                    continue
                if ev.event_seq <= sent:
                    continue
                sent = ev.event_seq
                yield format_event(ev)
            # stopping: tell the browser when to come back (to another worker), then close
            yield f"retry: {SHUTDOWN_RETRY_MS}\n: server restarting\n\n"
        finally:
            hub.unsubscribe(sub)
            hub.close_slot(user_id, slot)

    return Response(generate(), mimetype="text/event-stream", headers={
        # no-cache + X-Accel-Buffering: proxies (nginx) must neither cache nor buffer the
        # stream. (No "Connection" header: it is hop-by-hop, which WSGI apps may not set.)
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- the streams in the OpenAPI document ---------------------------------------------------
SSE_TAG = {"name": "sse", "description": (
    "Server-Sent Events: each stream replays your events after `Last-Event-ID` (or `?last_seq=`), "
    "then follows live. Messages are `id: <event_seq>` + `data: <event envelope JSON>` (`event_id`, "
    "`event_seq`, `type`, `aggregate_type`, `aggregate_id`, `aggregate_version`, `occurred_at`, "
    "`recorded_at`, `user_id`, `schema_version`, `payload`; each topic's payloads: /asyncapi.json); "
    "`: heartbeat` comments keep the connection alive; `retry:` sets the reconnect delay; one "
    "`event: reset` message (`id: 0`) answers a Last-Event-ID beyond the stream's head, followed by "
    "the whole stream from the start.")}


def openapi_operation(stream) -> dict:
    """The OpenAPI operation (GET) of one SSE stream: ``text/event-stream``, the two ways to
    say where to resume, and its error answers (shared error shape)."""
    return {
        "tags": [SSE_TAG["name"]],
        "summary": stream.description or f"The {stream.topic} events of the signed-in user, live.",
        "description": (
            f"Replays the signed-in user's `{stream.topic}` events after the given position, then "
            "follows live (see the `sse` tag). At most SSE_MAX_STREAMS_PER_USER open streams per user."),
        "parameters": [
            {"in": "query", "name": "last_seq", "required": False,
             "schema": {"type": "integer", "minimum": 0, "default": 0},
             "description": "Resume after this event_seq (0: the whole stream). Last-Event-ID wins when both are sent."},
            {"in": "header", "name": "Last-Event-ID", "required": False,
             "schema": {"type": "string", "pattern": "^[0-9]+$"},
             "description": "The `id:` of the last message received (what a browser's EventSource sends on reconnect)."},
        ],
        "responses": {
            "200": {
                "description": "The event stream (never ends on its own; reconnect after `retry:` ms when it does).",
                "headers": {"Cache-Control": {"schema": {"type": "string", "enum": ["no-cache"]}}},
                "content": {"text/event-stream": {"schema": {
                    "type": "string",
                    "description": "SSE messages: `id: <event_seq>\\ndata: <envelope JSON>\\n\\n`, "
                                   "comments (`: heartbeat`), `retry: <ms>`, and `event: reset`.",
                    "example": 'retry: 3000\n: connected\n\nid: 1\ndata: {"event_seq": 1, "type": "..."}\n\n'}}},
            },
            "400": {"description": "`last_seq` / `Last-Event-ID` is not a non-negative integer.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "429": {"description": "You already have SSE_MAX_STREAMS_PER_USER streams open (Retry-After).",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "503": {"description": "This server is restarting: reconnect (Retry-After).",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "default": "DEFAULT_ERROR",
        },
    }


def document_streams(app, spec, streams) -> None:
    """Add every SSE stream's GET to ``spec`` (idempotent: run after each batch of blueprints
    is documented, see ``app.Api.on_spec_built``)."""
    if not any(t.get("name") == SSE_TAG["name"] for t in spec._tags):
        spec.tag(dict(SSE_TAG))
    rules = {r.rule: r for r in app.url_map.iter_rules()}
    for _plugin, stream in streams:
        if stream.path in spec._paths or stream.path not in rules:
            continue
        spec.path(rule=rules[stream.path], operations={"get": openapi_operation(stream)})
