"""Operating the service: one structured access-log line per request, and ``/metrics``.

``init_app(app, ext)`` (called once from ``create_app``) adds both.

**Access log** (structlog, a JSON object per line on the ``tradeloop.access`` logger, to
stderr unless ``ACCESS_LOG=false``)::

    {"method": "POST", "path": "/api/positions/<uuid:position_id>/close", "status": 200,
     "duration_ms": 12.41, "user_id": 7, "request_id": "5f0c...", "event": "request",
     "level": "info", "timestamp": "2026-02-05T14:30:00.123Z"}

``path`` is the route template (never ids or query strings); ``user_id`` is null for
anonymous requests; ``duration_ms`` runs until the last byte of the body (an SSE stream's
line is written when the client leaves). ``X-Request-ID`` from the client (1-128 characters
of ``A-Za-z0-9._:-``) is kept, otherwise one is made; either way it is echoed on the response
and is ``g.request_id`` for other logs.

**Metrics** (prometheus_client, Prometheus text format at ``GET /metrics``, for admins and
for a scraper holding ``METRICS_TOKEN``, see ``authorize_scrape``):

=========================================  =============================================
``tradeloop_http_requests_total``          counter {method, route, status}
``tradeloop_http_request_duration_seconds``  histogram {method, route} (SSE streams excluded)
``tradeloop_sse_connections``              gauge {route}: open SSE streams
``tradeloop_outbox_head_seq``              gauge {stream}: last position written
``tradeloop_outbox_backlog_events``        gauge {stream}: written, not yet relayed to the
                                           bus (0 for the in-process bus: the outbox is its log)
``tradeloop_relay_lag_seconds``            gauge {stream}: age of the oldest event not relayed
``tradeloop_consumer_lag_events``          gauge {group, stream}: events a consumer group has
                                           not yet committed (in-process bus: head - group
                                           position; Kafka: high watermark - committed offset,
                                           summed over partitions)
``tradeloop_dead_letters``                 gauge {group}: dead letters not requeued
=========================================  =============================================

The stream, relay, consumer and dead-letter figures are read from the database (and, for
Kafka consumer lag, the broker) when scraped, so any process reports the whole deployment.

**gunicorn with several worker processes**: each worker counts its own requests. Set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory (wiped at every start) for the master and
its workers; prometheus_client then keeps the counters in files there and ``/metrics`` in any
worker sums every worker's (SSE connections too, as live workers' sum), and call
``mark_process_dead`` from gunicorn's ``child_exit`` hook (see docs/operations.md).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
import time
import uuid

import sqlalchemy as sa
from flask import Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

ACCESS_LOGGER = "tradeloop.access"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
UNMATCHED = "<unmatched>"

# Process-wide: one set per process, shared by every app the process builds (tests build many).
PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter("tradeloop_http_requests", "HTTP requests answered, by route template and status.",
                        ["method", "route", "status"], registry=PROCESS_REGISTRY)
HTTP_LATENCY = Histogram("tradeloop_http_request_duration_seconds",
                         "Time from the request to the last byte of the response (SSE streams excluded).",
                         ["method", "route"], registry=PROCESS_REGISTRY,
                         buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
SSE_CONNECTIONS = Gauge("tradeloop_sse_connections", "Open Server-Sent Event streams.", ["route"],
                        registry=PROCESS_REGISTRY, multiprocess_mode="livesum")


# -- request ids and the access log ---------------------------------------------------------
def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is sane, else a new one."""
    if header and _REQUEST_ID_OK.match(header):
        return header
    return uuid.uuid4().hex


def _utc_ms(_logger, _name, event: dict) -> dict:
    event["timestamp"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event


def access_logger():
    """A structlog logger writing JSON lines through the stdlib ``tradeloop.access`` logger.
    (structlog is imported here, on the first request: with ``rich`` installed it imports
    that too, which ``tradeloop --help`` should not pay for.)"""
    import structlog
    return structlog.wrap_logger(
        logging.getLogger(ACCESS_LOGGER),
        processors=[structlog.stdlib.add_log_level, _utc_ms, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.stdlib.BoundLogger)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (as logging's last-resort handler
    does), so a replaced stderr (a test runner's capture) never leaves it writing to a
    closed stream."""

    _tradeloop_access = True

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _ensure_handler() -> None:
    """One stderr handler on the access logger per process (not per app)."""
    lg = logging.getLogger(ACCESS_LOGGER)
    lg.setLevel(logging.INFO)
    if not any(getattr(h, "_tradeloop_access", False) for h in lg.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        lg.addHandler(h)
        lg.propagate = False


class _Body:
    """The response body, passed through; ``finish`` runs once, when the last chunk went or
    the server closed the response (a client leaving an SSE stream)."""

    def __init__(self, inner, finish):
        self._inner, self._finish, self._done = inner, finish, False

    def __iter__(self):
        for chunk in self._inner:
            yield chunk
        self._end()

    def close(self):
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._end()

    def _end(self):
        if not self._done:
            self._done = True
            self._finish()


class AccessMiddleware:
    """WSGI middleware around the Flask app: request id in and out, timing to the last byte,
    then one log line and the request metrics."""

    def __init__(self, wsgi_app, log_enabled: bool = True):
        self.wsgi_app = wsgi_app
        self.log_enabled = log_enabled
        self._log = None

    @property
    def log(self):
        if self._log is None and self.log_enabled:
            self._log = access_logger()
        return self._log

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ["tradeloop.request_id"] = rid
        state = {"status": 500, "sse": False}

        def _start_response(status, headers, exc_info=None):
            state["status"] = int(status.split(" ", 1)[0])
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"] + [(REQUEST_ID_HEADER, rid)]
            if any(k.lower() == "content-type" and v.startswith("text/event-stream") for k, v in headers):
                state["sse"] = True
                SSE_CONNECTIONS.labels(environ.get("tradeloop.route") or UNMATCHED).inc()
            return start_response(status, headers, exc_info)

        def finish():
            self._record(environ, state, time.perf_counter() - started)

        try:
            body = self.wsgi_app(environ, _start_response)
        except BaseException:
            finish()
            raise
        return _Body(body, finish)

    def _record(self, environ, state, seconds: float) -> None:
        route = environ.get("tradeloop.route") or UNMATCHED
        method = environ.get("REQUEST_METHOD", "GET")
        HTTP_REQUESTS.labels(method, route, str(state["status"])).inc()
        if state["sse"]:
            SSE_CONNECTIONS.labels(route).dec()
        else:
            HTTP_LATENCY.labels(method, route).observe(seconds)
        if self.log is not None:
            self.log.info("request", method=method, path=route, status=state["status"],
                          duration_ms=round(seconds * 1000, 2), user_id=environ.get("tradeloop.user_id"),
                          request_id=environ["tradeloop.request_id"])


def _note_request(*_args):
    """Copy what the log line needs from the request context into the WSGI environ (the
    context is gone when the body has been sent)."""
    env = request.environ
    if request.url_rule is not None:
        env["tradeloop.route"] = request.url_rule.rule
    user = g.get("user")
    env["tradeloop.user_id"] = getattr(user, "id", None)


# -- state read from the database (and the broker) at scrape time -----------------------------
class DeploymentCollector(Collector):
    """Outbox, relay, consumer and dead-letter figures of one deployment (``ext``)."""

    def __init__(self, ext):
        self.ext = ext

    def collect(self):
        from bus import outbox
        ext = self.ext
        streams = ext.topic_names()
        relayed = ext.bus.needs_relay
        relay_name = f"relay:{ext.bus.name}"
        head = GaugeMetricFamily("tradeloop_outbox_head_seq", "Last position written to each stream.", labels=["stream"])
        backlog = GaugeMetricFamily("tradeloop_outbox_backlog_events",
                                    "Events written but not yet relayed to the bus.", labels=["stream"])
        lag = GaugeMetricFamily("tradeloop_relay_lag_seconds",
                                "Age of the oldest event not yet relayed (0 when caught up).", labels=["stream"])
        consumer = GaugeMetricFamily("tradeloop_consumer_lag_events",
                                     "Events a consumer group has not yet committed.", labels=["group", "stream"])
        dead = GaugeMetricFamily("tradeloop_dead_letters", "Dead letters not requeued, per consumer group.",
                                 labels=["group"])
        groups = self._groups()
        now = dt.datetime.now(dt.timezone.utc)
        with ext.db.read() as conn:
            heads = {s: outbox.head(conn, s) for s in streams}
            for s in streams:
                head.add_metric([s], heads[s])
                cursor = outbox.get_cursor(conn, relay_name, s) if relayed else heads[s]
                backlog.add_metric([s], max(heads[s] - cursor, 0))
                age = 0.0
                if relayed and heads[s] > cursor:
                    oldest = conn.execute(sa.select(outbox.outbox.c.recorded_at).where(
                        outbox.outbox.c.stream == s, outbox.outbox.c.seq == cursor + 1)).scalar()
                    if oldest is not None:
                        if oldest.tzinfo is None:
                            oldest = oldest.replace(tzinfo=dt.timezone.utc)
                        age = max((now - oldest).total_seconds(), 0.0)
                lag.add_metric([s], age)
            if not relayed:
                for group, group_streams in groups.items():
                    for s in group_streams:
                        pos = outbox.get_cursor(conn, f"group:{group}", s)
                        consumer.add_metric([group, s], max(heads.get(s, 0) - pos, 0))
            t = outbox.dead_letters
            counts = dict(conn.execute(sa.select(t.c.consumer_group, sa.func.count()).where(
                t.c.status == "dead").group_by(t.c.consumer_group)).all())
        if relayed:
            for (group, s), n in kafka_consumer_lag(ext, groups).items():
                consumer.add_metric([group, s], n)
        for group in sorted(set(groups) | set(counts)):
            dead.add_metric([group], counts.get(group, 0))
        yield from (head, backlog, lag, consumer, dead)

    def _groups(self) -> dict[str, list[str]]:
        from bus.consumer import Group
        return {name: Group.from_subscriptions(name, subs).streams
                for name, subs in self.ext.plugins.subscriptions().items()}


def kafka_consumer_lag(ext, groups: dict[str, list[str]], timeout: float = 3.0) -> dict[tuple[str, str], int]:
    """(group, stream) -> high watermark - committed offset, summed over the topic's
    partitions (a group that never committed counts from the low watermark). Empty when the
    broker does not answer in time: the scrape still serves the other figures."""
    from confluent_kafka import Consumer, TopicPartition
    bus = ext.bus
    out: dict[tuple[str, str], int] = {}
    try:
        topics = bus.admin.list_topics(timeout=timeout).topics
        for group, streams in groups.items():
            probe = Consumer({"bootstrap.servers": bus.bootstrap, "group.id": group,
                              "enable.auto.commit": False, "client.id": f"{bus.client_id}-metrics"})
            try:
                for s in streams:
                    md = topics.get(bus.topic(s))
                    if md is None:
                        continue
                    tps = [TopicPartition(bus.topic(s), p) for p in md.partitions]
                    committed = probe.committed(tps, timeout=timeout)
                    total = 0
                    for tp in committed:
                        low, high = probe.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                                timeout=timeout, cached=False)
                        total += max(high - (tp.offset if tp.offset >= 0 else low), 0)
                    out[(group, s)] = total
            finally:
                probe.close()
    except Exception:  # broker unreachable: no consumer-lag series this scrape
        logging.getLogger(__name__).warning("consumer lag: the broker did not answer", exc_info=True)
        return {}
    return out


def metrics_text(ext) -> bytes:
    """The Prometheus exposition of this process (or, in multiprocess mode, every worker's)
    plus the deployment's state."""
    reg = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.MultiProcessCollector(reg)
    else:
        reg.register(_Forward(PROCESS_REGISTRY))
        from prometheus_client import ProcessCollector
        ProcessCollector(registry=reg)
    reg.register(DeploymentCollector(ext))
    for attempt in range(3):
        try:
            return generate_latest(reg)
        except (ValueError, OSError):
            # multiprocess mode: a worker that is just starting creates its file before it has
            # sized it, and reading that empty file fails; it is sized a moment later
            if attempt == 2 or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                raise
            time.sleep(0.05)


class _Forward(Collector):
    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        yield from self.registry.collect()


# -- wiring ------------------------------------------------------------------------------------
def init_app(app, ext) -> None:
    """Access log + request metrics around ``app``, and the ``/metrics`` endpoint."""
    from flask_smorest import Blueprint
    log_enabled = str(app.config.get("ACCESS_LOG", True)).lower() not in ("0", "false", "no", "off")
    if log_enabled:
        _ensure_handler()
    app.wsgi_app = AccessMiddleware(app.wsgi_app, log_enabled=log_enabled)
    app.after_request(_after)
    app.teardown_request(_note_request)

    @app.before_request
    def _request_id():
        g.request_id = request.environ.get("tradeloop.request_id") or request_id_from(None)

    blp = Blueprint("observability", __name__, description="Operating the service.")

    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

    @blp.route("/metrics")
    @blp.doc(summary="Prometheus metrics (admins, or the scrape credential METRICS_TOKEN)",
             security=[{"bearerAuth": []}, {"cookieAuth": []}], responses={
                 200: {"description": "Prometheus text exposition format 0.0.4: request counts and latency by "
                                      "route, SSE connections, outbox backlog per stream, relay lag, consumer "
                                      "lag per group, dead letters.",
                       "content": {"text/plain": {"schema": {"type": "string"}}}},
                 401: {"description": "no credential, or a wrong one", "content": error},
                 403: {"description": "signed in, but not an admin (`admin_only`)", "content": error}})
    def metrics():
        authorize_scrape()
        return Response(metrics_text(ext), content_type=CONTENT_TYPE_LATEST)
    # The host's sign-in check is skipped (what app.public marks; importing it would be a cycle)
    # because METRICS_TOKEN is no API token: authorize_scrape checks both kinds of credential.
    metrics._public = True

    app.extensions["tradeloop_api"].register_blueprint(blp)


def authorize_scrape() -> None:
    """Let a scrape through with ``Authorization: Bearer <METRICS_TOKEN>`` (compared in
    constant time), or an admin's API token or browser session; else 401 (no or a wrong
    credential) or 403 ``admin_only`` (a user who is not an admin). The metrics name every
    route, stream and consumer group and their volumes: not for the public."""
    import hmac

    from flask import current_app

    from app import errors
    expected = current_app.config.get("METRICS_TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if expected and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), str(expected).encode()):
        return
    user = g.get("user")
    if user is None:
        raise errors.Unauthorized("/metrics needs the METRICS_TOKEN bearer credential or an admin's sign-in")
    if not user.is_admin:
        raise errors.Forbidden("admin only", code="admin_only")


def _after(response):
    _note_request()
    return response
