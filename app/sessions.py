"""Server-side browser sessions (OWASP Session Management Cheat Sheet).

A browser signs in once with an API token (POST /api/auth/login) and then carries a cookie
holding a random 256-bit session id; the database keeps only its SHA-256, with the user, the
API token it came from, and its times. So:

* logout deletes the row: the old cookie is worthless at once (GET or POST);
* revoking the token deletes its sessions, and every lookup joins the token and refuses a
  revoked one, so a session never outlives its token;
* idle timeout (``SESSION_IDLE_TIMEOUT_SECONDS``, default 30 min): a session unused that long
  is refused; activity moves ``last_seen_at`` (written at most once a minute per session);
* absolute timeout (``SESSION_ABSOLUTE_TIMEOUT_SECONDS``, default 12 h): no activity extends a
  session past ``expires_at``; the cookie's Max-Age is the same;
* the cookie is ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` and ``Secure`` when the request came
  over HTTPS (after ``TRUSTED_PROXY_HOPS``' X-Forwarded-Proto) or ``SESSION_COOKIE_SECURE`` is
  true; a new id is issued at every sign-in (no fixation).

The table lives in the database every deployment already has (SQLite embedded, MySQL in
production): no extra service, the same behaviour on both, and a Redis outage signs nobody
out. Flask's own cookie session is not used.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
import uuid

import sqlalchemy as sa

from app.db import utcnow
from app.tables import api_tokens, browser_sessions, users

COOKIE = "tradeloop_session"
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class Session:
    id_hash: str
    public_id: str
    user_id: int
    user_name: str
    is_admin: bool
    token_id: int
    last_seen_at: dt.datetime
    expires_at: dt.datetime


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create(conn, user_id: int, token_id: int, *, absolute_seconds: int, user_agent: str | None = None,
           ip: str | None = None) -> tuple[str, dt.datetime]:
    """Start a session; return (the cookie value, its absolute expiry). The value is shown
    only now: the table keeps its hash."""
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + dt.timedelta(seconds=int(absolute_seconds))
    conn.execute(browser_sessions.insert().values(
        id_hash=_hash(raw), public_id=str(uuid.uuid4()), user_id=user_id, token_id=token_id, created_at=now,
        last_seen_at=now, expires_at=expires, user_agent=(user_agent or "")[:200] or None, ip=(ip or "")[:64] or None))
    return raw, expires


def resolve(conn, raw: str, *, idle_seconds: int) -> Session | None:
    """The live session for a cookie value, or None (unknown, logged out, idle too long, past
    its absolute expiry, or its token revoked)."""
    if not raw or len(raw) > 200:
        return None
    now = utcnow()
    row = conn.execute(
        sa.select(browser_sessions.c.id_hash, browser_sessions.c.public_id, browser_sessions.c.user_id,
                  browser_sessions.c.token_id, browser_sessions.c.last_seen_at, browser_sessions.c.expires_at,
                  users.c.name, users.c.is_admin)
        .join(users, users.c.id == browser_sessions.c.user_id)
        .join(api_tokens, api_tokens.c.id == browser_sessions.c.token_id)
        .where(browser_sessions.c.id_hash == _hash(raw), api_tokens.c.revoked_at.is_(None),
               browser_sessions.c.expires_at > now,
               browser_sessions.c.last_seen_at > now - dt.timedelta(seconds=int(idle_seconds)))).first()
    if row is None:
        return None
    return Session(row.id_hash, row.public_id, row.user_id, row.name, bool(row.is_admin), row.token_id,
                   row.last_seen_at, row.expires_at)


def still_valid(conn, id_hash: str, *, idle_seconds: int) -> bool:
    """For a long-lived request (an SSE stream): is the session it started with still live?"""
    now = utcnow()
    return conn.execute(
        sa.select(browser_sessions.c.id_hash)
        .join(api_tokens, api_tokens.c.id == browser_sessions.c.token_id)
        .where(browser_sessions.c.id_hash == id_hash, api_tokens.c.revoked_at.is_(None),
               browser_sessions.c.expires_at > now,
               browser_sessions.c.last_seen_at > now - dt.timedelta(seconds=int(idle_seconds)))).first() is not None


def needs_touch(session: Session) -> bool:
    return utcnow() - session.last_seen_at >= TOUCH_EVERY


def touch(conn, id_hash: str) -> None:
    conn.execute(browser_sessions.update().where(browser_sessions.c.id_hash == id_hash)
                 .values(last_seen_at=utcnow()))


def destroy(conn, raw: str) -> bool:
    """Logout: delete the cookie's session. True when there was one."""
    return bool(conn.execute(browser_sessions.delete().where(browser_sessions.c.id_hash == _hash(raw))).rowcount)


def destroy_for_token(conn, token_id: int) -> int:
    return conn.execute(browser_sessions.delete().where(browser_sessions.c.token_id == token_id)).rowcount


def destroy_public(conn, user_id: int, public_id: str) -> bool:
    return bool(conn.execute(browser_sessions.delete().where(
        browser_sessions.c.user_id == user_id, browser_sessions.c.public_id == public_id)).rowcount)


def list_for_user(conn, user_id: int, *, idle_seconds: int) -> list[dict]:
    now = utcnow()
    rows = conn.execute(sa.select(browser_sessions).where(
        browser_sessions.c.user_id == user_id, browser_sessions.c.expires_at > now,
        browser_sessions.c.last_seen_at > now - dt.timedelta(seconds=int(idle_seconds)))
        .order_by(browser_sessions.c.created_at)).fetchall()
    return [{"id": r.public_id, "token_id": r.token_id, "created_at": r.created_at, "last_seen_at": r.last_seen_at,
             "expires_at": r.expires_at, "user_agent": r.user_agent, "ip": r.ip, "_id_hash": r.id_hash} for r in rows]


def purge_expired(conn, *, idle_seconds: int) -> int:
    """Delete sessions past either timeout (they are refused anyway; this keeps the table
    small). Run by ``tradeloop tokens purge-sessions`` and opportunistically at sign-in."""
    now = utcnow()
    return conn.execute(browser_sessions.delete().where(sa.or_(
        browser_sessions.c.expires_at <= now,
        browser_sessions.c.last_seen_at <= now - dt.timedelta(seconds=int(idle_seconds))))).rowcount
