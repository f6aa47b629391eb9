"""Settings from environment variables, with embedded defaults.

Every backend is chosen by one setting: ``DATABASE_URL`` (SQLite file by default),
``REDIS_URL`` (in-process cache when unset) and ``KAFKA_BOOTSTRAP_SERVERS`` (in-process bus
when unset). Nothing else in the code branches on which backend is in use.
"""
from __future__ import annotations

import os
import secrets

DEFAULTS = {
    "DATABASE_URL": "sqlite:///tradeloop.db",
    "REDIS_URL": None,
    # Connections kept per process: as many as requests one process runs in a transaction at
    # once (a gevent worker serves many); more wait for a free one up to DATABASE_POOL_TIMEOUT
    # seconds. Overflow connections are opened and closed per burst (a full handshake each):
    # none by default. Mind the server's max_connections (processes x pool size).
    "DATABASE_POOL_SIZE": 50,
    "DATABASE_MAX_OVERFLOW": 0,
    "DATABASE_POOL_TIMEOUT": 30.0,
    # auto: no TLS to a loopback address or unix socket, TLS to any other host; on; off.
    # DATABASE_TLS_CA: a CA file to verify the server's certificate and name against.
    "DATABASE_TLS": "auto",
    "DATABASE_TLS_CA": None,
    # A pooled connection idle longer than this is pinged before use (a busy one is not).
    "DATABASE_PING_AFTER_IDLE_SECONDS": 10.0,
    "KAFKA_BOOTSTRAP_SERVERS": None,
    # None = every installed plugin; else a list of names (or dotted module paths).
    "TRADELOOP_PLUGINS": None,
    "SECRET_KEY": None,
    # Prefix for cache keys; default: derived from DATABASE_URL (one namespace per deployment).
    "CACHE_NAMESPACE": None,
    "IDEMPOTENCY_TTL_SECONDS": 24 * 3600,
    # How long a request with an Idempotency-Key that is in flight elsewhere waits for the
    # first one to finish (and is then answered with its response) before getting 409.
    "IDEMPOTENCY_WAIT_SECONDS": 5.0,
    "IDEMPOTENCY_LOCK_SECONDS": 60,
    "SSE_HEARTBEAT_SECONDS": 15.0,
    "SSE_RETRY_MS": 3000,
    "SSE_POLL_SECONDS": 0.5,
    "KAFKA_CLIENT_ID": "tradeloop",
    "KAFKA_TOPIC_PREFIX": "",
    "CONSUMER_MAX_ATTEMPTS": 5,
    "CONSUMER_BACKOFF_SECONDS": 0.2,
    "PAGE_SIZE_MAX": 500,
    # No request body is read past this many bytes (413): a 20 MB import plus its multipart
    # envelope is the largest legitimate one.
    "MAX_CONTENT_LENGTH": 24 * 1024 * 1024,
    # -- security (docs/security.md) --
    "SESSION_IDLE_TIMEOUT_SECONDS": 1800,
    "SESSION_ABSOLUTE_TIMEOUT_SECONDS": 12 * 3600,
    # None = Secure when the request came over HTTPS; "true"/"false" to force it.
    "SESSION_COOKIE_SECURE": None,
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host/-Port to trust.
    "TRUSTED_PROXY_HOPS": 0,
    # Other origins (comma-separated, e.g. https://desk.example.com) allowed to send
    # cookie-authenticated writes; the app's own origin always is.
    "CSRF_TRUSTED_ORIGINS": "",
    "RATELIMIT_ENABLED": True,
    # None = REDIS_URL when set, else in-process memory.
    "RATELIMIT_STORAGE_URI": None,
    "RATELIMIT_LOGIN_IP": "50 per 15 minutes",        # failed sign-ins per client IP
    "RATELIMIT_LOGIN_ACCOUNT": "30 per hour",         # sessions started per user
    "RATELIMIT_WRITES": "600 per minute",             # POST/PUT/PATCH/DELETE per user
    "SSE_MAX_STREAMS_PER_USER": 20,
    "SSE_REPLAY_PAGE": 500,
    "SSE_AUTH_RECHECK_SECONDS": 30.0,
    # One relay publishes per stream set; another takes over this long after it stops renewing.
    "RELAY_LEASE_SECONDS": 10.0,
    # One JSON access-log line per request on stderr (app/observability.py); false to silence.
    "ACCESS_LOG": True,
    # A scrape-only bearer credential for GET /metrics (besides an admin's token or session);
    # unset: only admins may read the metrics.
    "METRICS_TOKEN": None,
    # Background jobs (app/jobs, docs/jobs.md). The queue is Redis when REDIS_URL is set, else
    # a SQLite file (JOBS_SQLITE_PATH, default: beside the SQLite database).
    "JOBS_SQLITE_PATH": None,
    "JOBS_WORKER_THREADS": 2,          # jobs one worker process runs at once
    "JOBS_WORKER_NICE": 10,            # CPU priority below the web process's (0: unchanged)
    "JOBS_LEASE_SECONDS": 30.0,        # a run not heartbeating this long is presumed dead
    "JOBS_PROGRESS_SECONDS": 1.0,      # at most one progress write/event per job this often
    "JOBS_TICK_SECONDS": 5.0,          # each worker's recovery + schedule tick
    "JOBS_REQUEUE_AFTER_SECONDS": 30.0,  # a queued job with no message this long is re-enqueued
    "JOBS_SCHEDULE": None,             # per-deployment overrides: "name=off; name=every 600; ..."
    "JOBS_SCHEDULE_CATCHUP_SECONDS": 86400.0,  # missed slots this far back still run (once)
    # Processes for CPU work a request waits for (app.jobs.offloop); 0 = one less than the cores.
    "CPU_POOL_SIZE": 0,
}


def _parse(name: str, raw: str):
    default = DEFAULTS.get(name)
    if name == "TRADELOOP_PLUGINS":
        return [p.strip() for p in raw.split(",") if p.strip()]
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def load(overrides: dict | None = None) -> dict:
    """Defaults, then environment variables, then explicit overrides (tests, CLI)."""
    config = dict(DEFAULTS)
    for name in DEFAULTS:
        raw = os.environ.get(name)
        if raw not in (None, ""):
            config[name] = _parse(name, raw)
    if overrides:
        config.update(overrides)
    if isinstance(config.get("TRADELOOP_PLUGINS"), str):
        config["TRADELOOP_PLUGINS"] = _parse("TRADELOOP_PLUGINS", config["TRADELOOP_PLUGINS"])
    if not config.get("SECRET_KEY"):
        # Per-process secret: browser sessions end on restart unless SECRET_KEY is set.
        config["SECRET_KEY"] = secrets.token_hex(32)
    return config
