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
from flask import current_app, g, request, session
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from app import errors, public
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
    row = conn.execute(
        sa.select(users.c.id, users.c.name, users.c.is_admin)
        .join(api_tokens, api_tokens.c.user_id == users.c.id)
        .where(api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None))
    ).first()
    return User(row.id, row.name, bool(row.is_admin)) if row else None


def user_by_id(conn, user_id: int) -> User | None:
    row = conn.execute(sa.select(users.c.id, users.c.name, users.c.is_admin).where(users.c.id == user_id)).first()
    return User(row.id, row.name, bool(row.is_admin)) if row else None


def user_by_name(conn, name: str) -> User | None:
    row = conn.execute(sa.select(users.c.id, users.c.name, users.c.is_admin).where(users.c.name == name)).first()
    return User(row.id, row.name, bool(row.is_admin)) if row else None


def authenticate(db) -> User | None:
    """The user of this request: bearer token first, then the browser session."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.Unauthorized("Authorization must be 'Bearer <token>'")
        with db.read() as conn:
            user = user_by_token(conn, token.strip())
        if user is None:
            raise errors.Unauthorized("unknown or revoked token", code="invalid_token")
        return user
    uid = session.get("uid")
    if uid:
        with db.read() as conn:
            return user_by_id(conn, uid)
    return None


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
    if isinstance(target, Blueprint):
        return target
    return Blueprint.doc(responses={"403": {
        "description": "admin only (checked before the input is validated)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}})(target)


def require_admin() -> User:
    user = current_user()
    if not user.is_admin:
        raise errors.Forbidden("admin only", code="admin_only")
    return user


# -- HTTP ------------------------------------------------------------------------------
blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Sign in and out; who am I.")


class LoginSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=200),
                          metadata={"description": "an API token (as printed by `tradeloop users create`)"})


class UserSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    is_admin = fields.Boolean(required=True)


@blp.route("/login")
class Login(MethodView):
    @public
    @blp.arguments(LoginSchema)
    @blp.response(200, UserSchema)
    def post(self, data):
        """Start a browser session (HttpOnly cookie) from an API token."""
        db = current_app.extensions["tradeloop"].db
        with db.transaction() as conn:
            user = user_by_token(conn, data["token"])
        if user is None:
            raise errors.Unauthorized("unknown or revoked token", code="invalid_token")
        session.clear()
        session["uid"] = user.id
        session.permanent = True
        return dataclasses.asdict(user)



@blp.route("/logout")
class Logout(MethodView):
    @blp.response(204)
    def post(self):
        """End the browser session."""
        session.clear()


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, UserSchema)
    def get(self):
        """The signed-in user."""
        return dataclasses.asdict(current_user())
