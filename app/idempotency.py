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
together — a crash between commit and cache can't duplicate. A view that never opens the
transaction still gets its record: the completed record is inserted when the response is
ready. A concurrent duplicate blocks on the record's primary key and, once the first commits,
finds the record and replays it. The cache (Redis) holds completed responses and the in-flight
lock; if it is down, the database record alone keeps every outcome the same (only slower).

Cost per keyed write: one cache round trip to check (``get_or_lock``), one to complete
(``set_and_delete``); in the database one insert-if-absent (no savepoint) and one update, both
statements built once per dialect.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql  # noqa: F401  (insert-if-absent)
import sqlalchemy.dialects.sqlite  # noqa: F401
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
            cached, locked = ext.cache.get_or_lock(ck, ck + ":lock", float(cfg["IDEMPOTENCY_LOCK_SECONDS"]))
            if cached:
                return _replay(json.loads(cached), fp)
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
        _claim(conn, info["user_id"], info["key"], info["fingerprint"])
    except _AlreadyDone as done:
        _finish_cache(ext, info, done.record)
        g.idempotency = None
        raise ReplayInstead(_replay(done.record, info["fingerprint"])) from None


class _AlreadyDone(Exception):
    def __init__(self, record):
        self.record = record


class _Statements:
    """The record's statements for one dialect, built once: the claim (insert if absent, no
    savepoint), the look-up of a record the claim found, its deletion when expired, and the
    completion."""

    def __init__(self, dialect: str):
        t = idempotency_keys
        values = {c: sa.bindparam(c, type_=t.c[c].type) for c in (
            "user_id", "idem_key", "fingerprint", "method", "path", "created_at", "expires_at",
            "status_code", "response_body", "response_headers")}
        if dialect in ("mysql", "mariadb"):
            # IGNORE turns only the duplicate key into "0 rows" here: every other column is
            # bounded before the insert (key <= 255 characters, path cut at 500).
            self.claim = t.insert().prefix_with("IGNORE").values(values)
        elif dialect in ("sqlite", "postgresql"):
            dialect_insert = (sa.dialects.sqlite.insert if dialect == "sqlite" else sa.dialects.postgresql.insert)
            self.claim = dialect_insert(t).values(values).on_conflict_do_nothing(
                index_elements=[t.c.user_id, t.c.idem_key])
        else:  # pragma: no cover - another backend: a plain insert in a savepoint
            self.claim = None
            self.plain_insert = t.insert().values(values)
        key = sa.and_(t.c.user_id == sa.bindparam("user_id"), t.c.idem_key == sa.bindparam("idem_key"))
        self.select = sa.select(t).where(key)
        self.delete = t.delete().where(key)
        self.complete = t.update().where(sa.and_(
            t.c.user_id == sa.bindparam("b_user_id"), t.c.idem_key == sa.bindparam("b_idem_key"))).values(
            status_code=sa.bindparam("status_code"), response_body=sa.bindparam("response_body"),
            response_headers=sa.bindparam("response_headers"))

    def insert_if_absent(self, conn, params: dict) -> bool:
        """Whether the row was inserted (False: a committed record has the key; a running
        request's record is waited for on its row lock first)."""
        if self.claim is not None:
            return conn.execute(self.claim, params).rowcount == 1
        try:  # pragma: no cover
            with conn.begin_nested():
                conn.execute(self.plain_insert, params)
            return True
        except sa.exc.IntegrityError as exc:  # pragma: no cover
            if not is_duplicate_key(exc):
                raise
            return False


_STATEMENTS: dict[str, _Statements] = {}


def _statements(dialect: str) -> _Statements:
    found = _STATEMENTS.get(dialect)
    if found is None:
        found = _STATEMENTS[dialect] = _Statements(dialect)
    return found


def _claim(conn, user_id: int, key: str, fp: str, response: dict | None = None) -> None:
    """Insert the record as the first write of the request transaction (pending, or already
    completed with ``response`` when the view never opened the transaction). A committed
    record with the same key means the insert inserts nothing (after waiting on its row lock
    if that request is still running): then it is replayed, or forgotten if it has expired."""
    now = utcnow()
    ttl = dt.timedelta(seconds=int(current_app.config["IDEMPOTENCY_TTL_SECONDS"]))
    params = dict(user_id=user_id, idem_key=key, fingerprint=fp, method=request.method,
                  path=request.path[:500], created_at=now, expires_at=now + ttl,
                  status_code=None, response_body=None, response_headers=None)
    if response is not None:
        params.update(status_code=response["status"], response_body=response["body"],
                      response_headers=json.dumps(response["headers"]))
    stmts = _statements(conn.dialect.name)
    for _attempt in range(2):
        if stmts.insert_if_absent(conn, params):
            return
        existing = conn.execute(stmts.select, {"user_id": user_id, "idem_key": key}).first()
        if existing is None:
            continue  # the other request rolled back meanwhile: claim again
        if existing.expires_at <= now:
            # An expired record is forgotten, as if it had never been.
            conn.execute(stmts.delete, {"user_id": user_id, "idem_key": key})
            continue
        record = _record_from_row(existing)
        if record is None:
            raise errors.IdempotencyInFlight(
                "a request with this Idempotency-Key is still in progress; retry shortly")
        raise _AlreadyDone(record)
    raise errors.IdempotencyInFlight(
        "a request with this Idempotency-Key is still in progress; retry shortly")


def complete(ext, response: Response) -> None:
    """Store the response in the pending record (same transaction as the change). Only
    successful responses are kept: a failed request changed nothing and may be retried.
    A view that never opened the transaction gets its record here, inserted completed (one
    statement); if another request's record is found instead, ``ReplayInstead`` carries its
    answer."""
    info = getattr(g, "idempotency", None)
    if not info or not (200 <= response.status_code < 300):
        return
    headers = {h: response.headers[h] for h in REPLAYED_HEADERS if h in response.headers}
    body = response.get_data(as_text=True)
    record = {"fingerprint": info["fingerprint"], "status": response.status_code, "body": body,
              "headers": headers}
    if not info["claimed"]:
        info["claimed"] = True
        try:
            _claim(ext.request_conn(claim=False), info["user_id"], info["key"], info["fingerprint"], record)
        except _AlreadyDone as done:
            ext.end_request(commit=False)
            _finish_cache(ext, info, done.record)
            g.idempotency = None
            raise ReplayInstead(_replay(done.record, info["fingerprint"])) from None
    else:
        ext.request_conn().execute(_statements(ext.db.dialect).complete, {
            "b_user_id": info["user_id"], "b_idem_key": info["key"], "status_code": response.status_code,
            "response_body": body, "response_headers": json.dumps(headers)})
    info["record"] = record


def after_commit(ext, committed: bool) -> None:
    info = getattr(g, "idempotency", None)
    if not info:
        return
    _finish_cache(ext, info, info.get("record") if committed else None)


def _finish_cache(ext, info: dict, record: dict | None) -> None:
    """Cache ``record`` (when given) and release our in-flight lock: one round trip."""
    lock = info["cache_key"] + ":lock" if info.get("locked") else None
    info["locked"] = False
    if record is None and lock is None:
        return
    try:
        ext.cache.set_and_delete(info["cache_key"] if record is not None else None,
                                 json.dumps(record).encode() if record is not None else None,
                                 float(current_app.config["IDEMPOTENCY_TTL_SECONDS"]), lock)
    except CacheUnavailable:
        pass


def purge_expired(db) -> int:
    with db.transaction() as conn:
        return conn.execute(idempotency_keys.delete().where(idempotency_keys.c.expires_at <= utcnow())).rowcount
