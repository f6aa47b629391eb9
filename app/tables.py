"""The host's own tables (the core Alembic branch): users, API tokens, idempotency records."""
from __future__ import annotations

import sqlalchemy as sa

from app.db import UtcDateTime

metadata = sa.MetaData()

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(80), nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    # sha256 of the token: the token itself is shown once and never stored.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.String(80)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
)

idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("idem_key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("method", sa.String(10), nullable=False),
    sa.Column("path", sa.String(500), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("response_body", sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb")),
    sa.Column("response_headers", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)

# Server-side browser sessions (app.sessions). The cookie carries a random id; only its
# SHA-256 is stored. Each session belongs to the API token it was started with and is deleted
# with it (and the join in app.sessions refuses a revoked token's session regardless).
browser_sessions = sa.Table(
    "browser_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("public_id", sa.String(36), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("token_id", sa.Integer, sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    # the absolute timeout: no activity extends a session past this
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
    sa.Column("user_agent", sa.String(200)),
    sa.Column("ip", sa.String(64)),
)
