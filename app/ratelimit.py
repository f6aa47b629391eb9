"""Rate limits: failed sign-ins per client IP, sessions started per account, writes per user.

Built on ``limits`` (the engine under Flask-Limiter), called from the host's request guard
(``app.security``) so that the order of answers is fixed for every route (routing, 401, 403,
CSRF, then 429, before the body is read). Storage: Redis (``RATELIMIT_STORAGE_URI``, default
``REDIS_URL``) so every worker process shares the counts; in-process memory for the embedded
default. If Redis stops answering, counting goes on in memory in each process (logged) and
returns to Redis after a cool-down: limits loosen by the number of processes for that time but
never fail a request.

Every limit is a ``limits`` string in the config ("50 per 15 minutes"; "0" or empty turns one
off; ``RATELIMIT_ENABLED=false`` turns all off):

* ``RATELIMIT_LOGIN_IP``: *failed* POST /api/auth/login per client IP (moving window): the
  51st wrong token in 15 minutes is 429 whatever it is; successful sign-ins do not count;
* ``RATELIMIT_LOGIN_ACCOUNT``: sessions started per user: a leaked token cannot mint
  sessions without bound;
* ``RATELIMIT_WRITES``: POST/PUT/PATCH/DELETE per signed-in user (bearer or session).

A refusal is ``429 too_many_requests`` in the one error shape, with ``Retry-After`` (seconds
until the window frees a slot). Client IPs are ``request.remote_addr``: behind a reverse proxy
set ``TRUSTED_PROXY_HOPS`` so it is the client's, not the proxy's (docs/security.md).
"""
from __future__ import annotations

import logging
import math
import time

from flask import current_app, g, request

from app import errors

log = logging.getLogger(__name__)
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class TooManyRequests(errors.DomainError):
    """Too many requests; retry after the number of seconds in Retry-After."""
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        self.headers = {"Retry-After": str(self.retry_after)}


class Limits:
    """One app's limiter: storage, strategy and the parsed limits."""

    def __init__(self, cfg: dict, namespace: str):
        from limits import parse, storage, strategies
        self.enabled = _truthy(cfg.get("RATELIMIT_ENABLED", True))
        uri = cfg.get("RATELIMIT_STORAGE_URI") or cfg.get("REDIS_URL") or "memory://"
        self.prefix = f"tradeloop:{namespace}:rl"
        if uri.startswith(("redis://", "rediss://")):
            self.primary = storage.storage_from_string(uri, key_prefix=self.prefix, wrap_exceptions=True,
                                                       socket_timeout=0.25, socket_connect_timeout=0.25)
        else:
            self.primary = storage.storage_from_string(uri)
        self.fallback = storage.MemoryStorage()
        self._strategies = {id(s): strategies.MovingWindowRateLimiter(s) for s in (self.primary, self.fallback)}
        self._down_until = 0.0
        self.items = {}
        for name in ("RATELIMIT_LOGIN_IP", "RATELIMIT_LOGIN_ACCOUNT", "RATELIMIT_WRITES"):
            raw = (cfg.get(name) or "").strip()
            self.items[name] = parse(raw) if raw and raw != "0" else None

    def _strategy(self):
        if self.primary is not self.fallback and time.monotonic() < self._down_until:
            return self._strategies[id(self.fallback)]
        return self._strategies[id(self.primary)]

    def _call(self, op: str, item, *ids: str):
        strat = self._strategy()
        try:
            return getattr(strat, op)(item, *ids)
        except Exception as exc:  # storage unreachable: count in this process for a while
            if strat is self._strategies[id(self.fallback)]:
                raise
            log.warning("rate-limit storage unreachable (%s); counting in memory for 5 s", exc)
            self._down_until = time.monotonic() + 5.0
            return getattr(self._strategies[id(self.fallback)], op)(item, *ids)

    def retry_after(self, item, *ids: str) -> int:
        try:
            stats = self._call("get_window_stats", item, *ids)
            return math.ceil(max(stats.reset_time - time.time(), 1))
        except Exception:
            return int(item.get_expiry())

    def hit(self, name: str, *ids: str) -> None:
        """Count one; raise 429 when the limit was already reached."""
        item = self.items.get(name)
        if not self.enabled or item is None:
            return
        if not self._call("hit", item, name, *ids):
            raise TooManyRequests(_MESSAGES[name].format(limit=item), self.retry_after(item, name, *ids))

    def test(self, name: str, *ids: str) -> None:
        """Raise 429 if one more would exceed the limit (without counting)."""
        item = self.items.get(name)
        if not self.enabled or item is None:
            return
        if not self._call("test", item, name, *ids):
            raise TooManyRequests(_MESSAGES[name].format(limit=item), self.retry_after(item, name, *ids))

    def reset(self) -> None:
        for s in (self.primary, self.fallback):
            try:
                s.reset()
            except Exception:
                pass


_MESSAGES = {
    "RATELIMIT_LOGIN_IP": "too many failed sign-ins from this address ({limit}); retry later",
    "RATELIMIT_LOGIN_ACCOUNT": "too many sessions started for this account ({limit}); retry later",
    "RATELIMIT_WRITES": "too many writes ({limit}); slow down and retry",
}


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def limits_of(app=None) -> Limits:
    return (app or current_app).extensions["tl_ratelimit"]


def init_app(app, ext) -> None:
    app.extensions["tl_ratelimit"] = Limits(app.config, ext.namespace)


# -- the checks ------------------------------------------------------------------------------
def client_ip() -> str:
    return request.remote_addr or "unknown"


def check_login_ip() -> None:
    """Before a sign-in: refuse an address that already failed too often."""
    limits_of().test("RATELIMIT_LOGIN_IP", client_ip())


def hit_login_failure() -> None:
    """After a failed sign-in."""
    try:
        limits_of().hit("RATELIMIT_LOGIN_IP", client_ip())
    except TooManyRequests:
        pass  # this attempt is answered 401; the next one is refused by check_login_ip


def hit_login_account(user_id: int) -> None:
    """A session is about to start for ``user_id``."""
    limits_of().hit("RATELIMIT_LOGIN_ACCOUNT", str(user_id))


def guard(ext) -> None:
    """The request guard's rate-limit step: writes per signed-in user."""
    user = getattr(g, "user", None)
    if user is not None and request.method in WRITE_METHODS:
        limits_of().hit("RATELIMIT_WRITES", str(user.id))
