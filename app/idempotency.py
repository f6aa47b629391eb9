"""Idempotency-Key handling for every POST/PUT/PATCH/DELETE (the IETF httpapi draft and
Stripe's semantics), applied by the host to all plugins' routes.

* Same key + same request -> the first response is replayed (status, body; no second event),
  with ``Idempotent-Replayed: true``.
* Same key + a different request (method, path or body) -> 422 ``idempotency_key_reused``.
* Same key while the first request is still running -> wait up to IDEMPOTENCY_WAIT_SECONDS
  for it and replay its answer; 409 ``idempotency_key_in_flight`` if it is still running.
* Keys are scoped per user and kept IDEMPOTENCY_TTL_SECONDS (24 h by default).

Durability: the record is inserted as the first statement of the request's own transaction
and completed with the response before that transaction commits, so state and record commit
together — a crash between commit and cache can't duplicate. A concurrent duplicate blocks
on the record's primary key and, once the first commits, finds the record and replays it.
The cache (Redis) holds completed responses and the in-flight lock; if it is down, the
database record alone keeps every outcome the same (only slower).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time

import sqlalchemy as sa
from flask import Response, current_app, g, request

from app import errors
from app.cache import CacheUnavailable
from app.db import is_duplicate_key, utcnow
from app.tables import idempotency_keys

HEADER = "Idempotency-Key"
METHODS = {"POST", "PUT", "PATCH", "DELETE"}
REPLAYED_HEADERS = ("Content-Type", "Location", "ETag")


def fingerprint() -> str:
    body = request.get_data(cache=True) or b""
    try:  # canonical JSON, so key order and whitespace don't make a "different" request
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        pass
    h = hashlib.sha256()
    h.update(request.method.encode() + b" " + request.full_path.rstrip("?").encode() + b"\n")
    h.update(body)
    return h.hexdigest()


def _cache_key(ext, user_id: int, key: str) -> str:
    """Namespaced by deployment (its database), so deployments sharing a Redis never see
    each other's keys."""
    return f"tradeloop:{ext.namespace}:idem:{user_id}:{hashlib.sha256(key.encode()).hexdigest()}"


def _record_from_row(row) -> dict | None:
    if row is None or row.status_code is None:
        return None
    return {"fingerprint": row.fingerprint, "status": row.status_code, "body": row.response_body or "",
            "headers": json.loads(row.response_headers or "{}")}


def _replay(record: dict, fp: str) -> Response:
    if record["fingerprint"] != fp:
        raise errors.IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request (method, path or body)",
            errors={"headers": {HEADER: ["already used with a different request"]}})
    resp = Response(record["body"], status=record["status"])
    for name, value in record["headers"].items():
        resp.headers[name] = value
    resp.headers["Idempotent-Replayed"] = "true"
    return resp


def before_request(ext) -> Response | None:
    """Answer a replay, or claim the key for this request. Called by the host once the user
    is known. Returns a Response to short-circuit, or None to proceed."""
    key = request.headers.get(HEADER)
    if request.method not in METHODS or key is None or getattr(g, "user", None) is None:
        return None
    if len(key) > 255:  # (the documented limit is on the header as sent)
        raise errors.BadRequest("Idempotency-Key must be 1-255 characters",
                                errors={"headers": {HEADER: ["must be 1-255 characters"]}})
    key = key.strip()
    if not key:
        raise errors.BadRequest("Idempotency-Key must be 1-255 characters",
                                errors={"headers": {HEADER: ["must be 1-255 characters"]}})
    cfg = current_app.config
    user_id, fp = g.user.id, fingerprint()
    ck = _cache_key(ext, user_id, key)
    deadline = time.monotonic() + float(cfg["IDEMPOTENCY_WAIT_SECONDS"])
    while True:
        try:
            cached = ext.cache.get(ck)
            if cached:
                return _replay(json.loads(cached), fp)
            locked = ext.cache.add(ck + ":lock", b"1", float(cfg["IDEMPOTENCY_LOCK_SECONDS"]))
        except CacheUnavailable:
            locked = None  # no cache: the record's primary key in the database serialises us
        if locked is not False:
            break
        # Another request holds the key: wait for its answer to appear in the cache.
        if time.monotonic() >= deadline:
            raise errors.IdempotencyInFlight(
                "a request with this Idempotency-Key is still in progress; retry shortly")
        time.sleep(0.02)
    # The claim is made lazily, as the first statement of the request's transaction (see
    # ``claim_if_pending``), so a view may do slow work (an HTTP call) before it opens one.
    g.idempotency = {"key": key, "fingerprint": fp, "cache_key": ck, "locked": bool(locked),
                     "user_id": user_id, "claimed": False}
    return None


class ReplayInstead(Exception):
    """Raised from inside a request when its key turns out to be answered already."""

    def __init__(self, response: Response):
        self.response = response


def claim_if_pending(ext, conn) -> None:
    """Called by the host when the request opens its transaction: insert the pending record
    first. If the key was committed meanwhile by another request, answer with its response."""
    info = getattr(g, "idempotency", None)
    if not info or info["claimed"]:
        return
    info["claimed"] = True
    try:
        _claim(ext, conn, info["user_id"], info["key"], info["fingerprint"])
    except _AlreadyDone as done:
        _cache_put(ext, info["cache_key"], done.record)
        _release(ext)
        g.idempotency = None
        raise ReplayInstead(_replay(done.record, info["fingerprint"]))


class _AlreadyDone(Exception):
    def __init__(self, record):
        self.record = record


def _lookup(db, user_id: int, key: str) -> dict | None:
    with db.read() as conn:
        row = conn.execute(sa.select(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id, idempotency_keys.c.idem_key == key,
            idempotency_keys.c.expires_at > utcnow())).first()
    return _record_from_row(row)


def _claim(ext, conn, user_id: int, key: str, fp: str) -> None:
    """Insert the pending record as the first write of the request transaction. A committed
    record with the same key makes the insert fail (after waiting on its row lock if that
    request is still running): then it is replayed, or forgotten if it has expired."""
    now = utcnow()
    ttl = dt.timedelta(seconds=int(current_app.config["IDEMPOTENCY_TTL_SECONDS"]))
    row = dict(user_id=user_id, idem_key=key, fingerprint=fp, method=request.method,
               path=request.path[:500], created_at=now, expires_at=now + ttl)
    for _attempt in range(2):
        try:
            with conn.begin_nested():
                conn.execute(idempotency_keys.insert().values(**row))
            return
        except sa.exc.IntegrityError as exc:
            if not is_duplicate_key(exc):
                raise
            existing = conn.execute(sa.select(idempotency_keys).where(
                idempotency_keys.c.user_id == user_id, idempotency_keys.c.idem_key == key)).first()
            if existing is not None and existing.expires_at <= now:
                # An expired record is forgotten, as if it had never been.
                conn.execute(idempotency_keys.delete().where(
                    idempotency_keys.c.user_id == user_id, idempotency_keys.c.idem_key == key))
                continue
            record = _record_from_row(existing)
            if record is None:
                raise errors.IdempotencyInFlight(
                    "a request with this Idempotency-Key is still in progress; retry shortly") from exc
            raise _AlreadyDone(record) from exc


def complete(ext, response: Response) -> None:
    """Store the response in the pending record (same transaction as the change). Only
    successful responses are kept: a failed request changed nothing and may be retried."""
    info = getattr(g, "idempotency", None)
    if not info or not (200 <= response.status_code < 300):
        return
    headers = {h: response.headers[h] for h in REPLAYED_HEADERS if h in response.headers}
    body = response.get_data(as_text=True)
    # A view that never touched the database makes its claim here, then completes it.
    ext.request_conn().execute(idempotency_keys.update().where(
        idempotency_keys.c.user_id == g.user.id, idempotency_keys.c.idem_key == info["key"]).values(
        status_code=response.status_code, response_body=body, response_headers=json.dumps(headers)))
    info["record"] = {"fingerprint": info["fingerprint"], "status": response.status_code, "body": body,
                      "headers": headers}


def after_commit(ext, committed: bool) -> None:
    info = getattr(g, "idempotency", None)
    if not info:
        return
    if committed and info.get("record"):
        _cache_put(ext, info["cache_key"], info["record"])
    _release(ext)


def _cache_put(ext, ck: str, record: dict) -> None:
    try:
        ext.cache.set(ck, json.dumps(record).encode(), float(current_app.config["IDEMPOTENCY_TTL_SECONDS"]))
    except CacheUnavailable:
        pass


def _release(ext) -> None:
    info = getattr(g, "idempotency", None)
    if info and info.get("locked"):
        try:
            ext.cache.delete(info["cache_key"] + ":lock")
        except CacheUnavailable:
            pass
        info["locked"] = False


def purge_expired(db) -> int:
    with db.transaction() as conn:
        return conn.execute(idempotency_keys.delete().where(idempotency_keys.c.expires_at <= utcnow())).rowcount
