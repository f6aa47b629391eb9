"""Users, API tokens and browser sessions.

API clients send ``Authorization: Bearer <token>``; browsers sign in once with their token at
POST /api/auth/login and then carry an HttpOnly, SameSite=Lax session cookie (which is also
what EventSource sends). Only a SHA-256 of each token is stored. ``g.user`` is the signed-in
``User``; every query on a user's rows is scoped to ``g.user.id`` by the service layer, and
another user's id answers 404, never 403, so ids cannot be probed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import secrets

import sqlalchemy as sa
from flask import after_this_request, current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import Schema, fields, validate

from app import errors
from app import fields as tf
from app.web import Blueprint, public
from app.db import utcnow
from app.tables import api_tokens, users


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool = False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(conn, name: str, *, admin: bool = False) -> tuple[User, str]:
    """Create a user and a first API token; return both (the token is shown only now)."""
    if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
        raise errors.Conflict(f"user {name!r} already exists", code="user_exists")
    uid = conn.execute(users.insert().values(name=name, is_admin=admin, created_at=utcnow())).inserted_primary_key[0]
    return User(uid, name, admin), issue_token(conn, uid)


def issue_token(conn, user_id: int, label: str | None = None) -> str:
    token = "tl_" + secrets.token_urlsafe(32)
    conn.execute(api_tokens.insert().values(user_id=user_id, token_hash=hash_token(token), label=label,
                                            created_at=utcnow()))
    return token


def user_by_token(conn, token: str) -> User | None:
    found = token_user(conn, token)
    return found[0] if found else None


# Every authenticated request runs this: built once, executed with a bound hash.
_TOKEN_USER = (
    sa.select(users.c.id, users.c.name, users.c.is_admin, api_tokens.c.id.label("token_id"))
    .join(api_tokens, api_tokens.c.user_id == users.c.id)
    .where(api_tokens.c.token_hash == sa.bindparam("token_hash"), api_tokens.c.revoked_at.is_(None)))


def token_user(conn, token: str) -> tuple[User, int] | None:
    """(the user, the token's id) for a live token, else None."""
    row = conn.execute(_TOKEN_USER, {"token_hash": hash_token(token)}).first()
    return (User(row.id, row.name, bool(row.is_admin)), row.token_id) if row else None


def token_is_live(conn, token_id: int) -> bool:
    return conn.execute(sa.select(api_tokens.c.id).where(
        api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))).first() is not None


def list_tokens(conn, user_id: int) -> list[dict]:
    rows = conn.execute(sa.select(api_tokens.c.id, api_tokens.c.label, api_tokens.c.created_at,
                                  api_tokens.c.revoked_at).where(api_tokens.c.user_id == user_id)
                        .order_by(api_tokens.c.id)).fetchall()
    return [{"id": r.id, "label": r.label, "created_at": r.created_at, "revoked_at": r.revoked_at} for r in rows]


def create_token(conn, user_id: int, label: str | None = None) -> dict:
    """A new API token for ``user_id``: its listing plus ``token`` (shown only now)."""
    token = issue_token(conn, user_id, label)
    row = conn.execute(sa.select(api_tokens.c.id).where(api_tokens.c.token_hash == hash_token(token))).first()
    out = next(t for t in list_tokens(conn, user_id) if t["id"] == row.id)
    return {**out, "token": token}


def revoke_token(conn, token_id: int, *, user_id: int | None = None) -> dict:
    """Revoke a token and end every browser session started with it. ``user_id`` scopes it
    (another user's token is 404, like an unknown one); None = any user's (admin CLI).
    Revoking a revoked token changes nothing."""
    from app import sessions
    q = sa.select(api_tokens.c.id, api_tokens.c.user_id, api_tokens.c.revoked_at).where(api_tokens.c.id == token_id)
    if user_id is not None:
        q = q.where(api_tokens.c.user_id == user_id)
    row = conn.execute(q).first()
    if row is None:
        raise errors.NotFound(f"token {token_id} not found")
    if row.revoked_at is None:
        conn.execute(api_tokens.update().where(api_tokens.c.id == token_id).values(revoked_at=utcnow()))
    ended = sessions.destroy_for_token(conn, token_id)
    out = next(t for t in list_tokens(conn, row.user_id) if t["id"] == token_id)
    return {**out, "sessions_ended": ended}


def user_by_id(conn, user_id: int) -> User | None:
    row = conn.execute(sa.select(users.c.id, users.c.name, users.c.is_admin).where(users.c.id == user_id)).first()
    return User(row.id, row.name, bool(row.is_admin)) if row else None


def user_by_name(conn, name: str) -> User | None:
    row = conn.execute(sa.select(users.c.id, users.c.name, users.c.is_admin).where(users.c.name == name)).first()
    return User(row.id, row.name, bool(row.is_admin)) if row else None


def _settings() -> tuple[int, int]:
    cfg = current_app.config
    return int(cfg["SESSION_IDLE_TIMEOUT_SECONDS"]), int(cfg["SESSION_ABSOLUTE_TIMEOUT_SECONDS"])


def authenticate(db) -> User | None:
    """The user of this request: bearer token first, then the browser session cookie.
    Sets ``g.auth``: ``("bearer", token_id)`` or ``("session", session)`` (CSRF checks apply to
    the latter; long-lived requests re-check either with ``still_authenticated``)."""
    from app import sessions
    g.auth = None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.Unauthorized("Authorization must be 'Bearer <token>'")
        with db.read() as conn:
            found = token_user(conn, token.strip())
        if found is None:
            raise errors.Unauthorized("unknown or revoked token", code="invalid_token")
        g.auth = ("bearer", found[1])
        return found[0]
    raw = request.cookies.get(sessions.COOKIE)
    if not raw:
        return None
    idle, _ = _settings()
    with db.read() as conn:
        sess = sessions.resolve(conn, raw, idle_seconds=idle)
    if sess is None:
        g.tl_clear_session_cookie = True  # logged out, expired or revoked: forget the cookie
        return None
    if sessions.needs_touch(sess):
        with db.transaction() as conn:
            sessions.touch(conn, sess.id_hash)
    g.auth = ("session", sess)
    return User(sess.user_id, sess.user_name, sess.is_admin)


def still_authenticated(db, auth, *, idle_seconds: int) -> bool:
    """Whether the credential a long-lived request (an SSE stream) started with is still
    good: the token not revoked, the session not logged out, revoked or expired. (No app
    context needed: a streamed response's generator runs without one.)"""
    from app import sessions
    if not auth:
        return False
    idle = idle_seconds
    with db.read() as conn:
        if auth[0] == "bearer":
            return token_is_live(conn, auth[1])
        return sessions.still_valid(conn, auth[1].id_hash, idle_seconds=idle)


def via_session() -> bool:
    """Whether this request is authenticated by the browser session cookie."""
    auth = getattr(g, "auth", None)
    return bool(auth) and auth[0] == "session"


def current_user() -> User:
    user = getattr(g, "user", None)
    if user is None:
        raise errors.Unauthorized()
    return user


def admin_only(target):
    """Mark a view (function or MethodView method) or a whole ``Blueprint`` as admin-only.
    The host answers a signed-in non-admin with 403 ``admin_only`` before it validates the
    body or the query (authorization before validation), and documents the 403."""
    target._tl_admin_only = True
    if isinstance(target, SmorestBlueprint):
        return target
    return SmorestBlueprint.doc(responses={"403": {
        "description": "admin only (checked before the input is validated)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}})(target)


def require_admin() -> User:
    user = current_user()
    if not user.is_admin:
        raise errors.Forbidden("admin only", code="admin_only")
    return user


# -- HTTP ------------------------------------------------------------------------------
ErrorRef = "Error"  # the host's one error schema (components/schemas/Error)
blp = Blueprint("auth", __name__, url_prefix="/api/auth",
                description="Sign in and out (browser sessions); who am I; your API tokens and sessions.")


class LoginSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=200),
                          metadata={"description": "an API token (as printed by `tradeloop users create`)"})


class UserSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    is_admin = fields.Boolean(required=True)


class AuthStatusSchema(Schema):
    authenticated = fields.Boolean(required=True)
    user = fields.Nested(UserSchema, required=True, allow_none=True,
                         metadata={"description": "the signed-in user; null when not signed in"})


class TokenIn(Schema):
    label = fields.String(validate=validate.Length(min=1, max=80), allow_none=True,
                          metadata={"description": "what the token is for, e.g. 'desk script'"})


class TokenSchema(Schema):
    id = fields.Integer(required=True)
    label = fields.String(required=True, allow_none=True)
    created_at = tf.UtcDateTime(required=True)
    revoked_at = tf.UtcDateTime(required=True, allow_none=True)
    current = fields.Boolean(required=True, metadata={"description": "the token this request is authenticated with "
                                                                     "(directly or through its session)"})


class NewTokenSchema(TokenSchema):
    token = fields.String(required=True, metadata={"description": "the token itself: shown only now, store it"})


class SessionSchema(Schema):
    id = fields.String(required=True)
    token_id = fields.Integer(required=True, metadata={"description": "the API token the session was started with"})
    created_at = tf.UtcDateTime(required=True)
    last_seen_at = tf.UtcDateTime(required=True)
    expires_at = tf.UtcDateTime(required=True, metadata={"description": "absolute timeout; idle timeout applies too"})
    user_agent = fields.String(required=True, allow_none=True)
    ip = fields.String(required=True, allow_none=True)
    current = fields.Boolean(required=True)


def _current_token_id() -> int | None:
    auth = getattr(g, "auth", None)
    if not auth:
        return None
    return auth[1] if auth[0] == "bearer" else auth[1].token_id


def _db():
    return current_app.extensions["tradeloop"].db


def _cookie_secure() -> bool:
    configured = current_app.config.get("SESSION_COOKIE_SECURE")
    if configured is None or configured == "":
        return request.is_secure
    if isinstance(configured, str):
        return configured.strip().lower() in ("1", "true", "yes", "on")
    return bool(configured)


def set_session_cookie(response, value: str, max_age: int) -> None:
    from app import sessions
    response.set_cookie(sessions.COOKIE, value, max_age=max_age, path="/", secure=_cookie_secure(),
                        httponly=True, samesite="Lax")


def clear_session_cookie(response) -> None:
    from app import sessions
    response.delete_cookie(sessions.COOKIE, path="/", secure=_cookie_secure(), httponly=True, samesite="Lax")


@blp.route("/login")
class Login(MethodView):
    @public
    @blp.arguments(LoginSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(401, schema=ErrorRef, description="unknown or revoked token")
    @blp.alt_response(429, schema=ErrorRef, description="too many failed sign-ins from this address, or sessions "
                                                         "for this account; see Retry-After")
    def post(self, data):
        """Start a browser session from an API token: an HttpOnly cookie holding a new random
        session id (idle and absolute timeouts; ends with logout or when the token is revoked).
        Cross-origin requests are refused (403) and the body must be JSON (415)."""
        from app import ratelimit, sessions
        idle, absolute = _settings()
        ratelimit.check_login_ip()
        with _db().transaction() as conn:
            found = token_user(conn, data["token"])
            if found is None:
                ratelimit.hit_login_failure()
                raise errors.Unauthorized("unknown or revoked token", code="invalid_token")
            user, token_id = found
            ratelimit.hit_login_account(user.id)
            old = request.cookies.get(sessions.COOKIE)
            if old:
                sessions.destroy(conn, old)  # a sign-in always gets a fresh id (no fixation)
            raw, _ = sessions.create(conn, user.id, token_id, absolute_seconds=absolute,
                                     user_agent=request.headers.get("User-Agent"), ip=request.remote_addr)
            if secrets.randbelow(50) == 0:
                sessions.purge_expired(conn, idle_seconds=idle)

        @after_this_request
        def _cookie(response):
            set_session_cookie(response, raw, absolute)
            return response
        return dataclasses.asdict(user)


Login.post._tl_csrf_login = True


@blp.route("/logout")
class Logout(MethodView):
    @public
    @blp.response(204)
    def post(self):
        """End the browser session: it is deleted on the server, so the cookie no longer works
        anywhere. Without a session this does nothing (still 204)."""
        from app import sessions
        raw = request.cookies.get(sessions.COOKIE)
        if raw:
            with _db().transaction() as conn:
                sessions.destroy(conn, raw)

        @after_this_request
        def _cookie(response):
            clear_session_cookie(response)
            return response


Logout.post._tl_csrf_login = True


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, UserSchema)
    def get(self):
        """The signed-in user."""
        return dataclasses.asdict(current_user())


@blp.route("/status")
class Status(MethodView):
    @public
    @blp.doc(security=[])
    @blp.response(200, AuthStatusSchema)
    def get(self):
        """Whether this request carries a valid credential (bearer token or browser session),
        and whose: 200 either way, so a page can ask without a failed request (``/me``
        answers 401 when signed out). It tells the caller only about its own credential; an
        unknown, revoked or expired one is ``{"authenticated": false, "user": null}``."""
        user = g.get("user")
        return {"authenticated": user is not None, "user": dataclasses.asdict(user) if user else None}


@blp.route("/tokens")
class Tokens(MethodView):
    @blp.response(200, TokenSchema(many=True))
    @blp.paginated
    def get(self):
        """Your API tokens (never the tokens themselves), oldest first, revoked ones included."""
        with _db().read() as conn:
            rows = list_tokens(conn, current_user().id)
        cur = _current_token_id()
        return [{**t, "current": t["id"] == cur} for t in rows]

    @blp.arguments(TokenIn)
    @blp.response(201, NewTokenSchema)
    def post(self, data):
        """Create an API token; the token is in this response only."""
        from app.web import conn as request_conn
        out = create_token(request_conn(), current_user().id, data.get("label"))
        return {**out, "current": False}


@blp.route("/tokens/<int(max=2147483647):token_id>")
class OneToken(MethodView):
    @blp.response(204)
    def delete(self, token_id):
        """Revoke one of your tokens: it stops working at once and every browser session
        started with it ends (open SSE streams close within SSE_AUTH_RECHECK_SECONDS).
        Revoking a revoked token changes nothing; another user's token is 404."""
        from app.web import conn as request_conn
        revoke_token(request_conn(), token_id, user_id=current_user().id)


@blp.route("/sessions")
class Sessions(MethodView):
    @blp.response(200, SessionSchema(many=True))
    @blp.paginated
    def get(self):
        """Your live browser sessions (where and when they started, last activity)."""
        from app import sessions
        idle, _ = _settings()
        with _db().read() as conn:
            rows = sessions.list_for_user(conn, current_user().id, idle_seconds=idle)
        auth = getattr(g, "auth", None)
        cur = auth[1].id_hash if auth and auth[0] == "session" else None
        return [{**{k: v for k, v in r.items() if k != "_id_hash"}, "current": r["_id_hash"] == cur} for r in rows]


@blp.route("/sessions/<string(length=36):session_id>")
class OneSession(MethodView):
    @blp.response(204)
    def delete(self, session_id):
        """End one of your browser sessions (e.g. one left signed in elsewhere); 404 if it is
        not yours or already over."""
        from app.web import conn as request_conn
        from app import sessions
        if not sessions.destroy_public(request_conn(), current_user().id, session_id):
            raise errors.NotFound("session not found")
