"""The breakers context's tables (SQLAlchemy Core, on this plugin's own ``metadata``).

Everything that enforcement depends on is a row here, so a restarted (or second) app on the
same database enforces exactly the same state. ``limit`` is a reserved word in SQL: the
column is ``limit_value`` (JSON key ``limit``).
"""
from __future__ import annotations

import sqlalchemy as sa

from app.db import Money, UtcDateTime

metadata = sa.MetaData()

# Deployment-wide rows have user_id NULL and scope_key 0; a user's rows have scope_key =
# user_id (ids start at 1), so one unique key covers both scopes (NULLs are never equal).
configs = sa.Table(
    "breaker_configs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("scope_key", sa.Integer, nullable=False),
    sa.Column("user_id", sa.Integer, nullable=True),
    sa.Column("breaker", sa.String(40), nullable=False),
    sa.Column("limit_value", Money(18, 6), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),       # critical | reduce_only | warning
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("reset_policy", sa.String(20), nullable=False),   # manual | session_open | auto
    sa.Column("capital", Money(18, 4), nullable=True),          # max_drawdown: account equity basis
    sa.Column("session_open", sa.String(5), nullable=False),    # "09:30" local
    sa.Column("session_tz", sa.String(64), nullable=False),     # "America/New_York"
    sa.Column("updated_by", sa.String(120), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("scope_key", "breaker", name="uq_breaker_configs_scope"),
)

# The latch: a breaker trips when an evaluation (after a new input) finds it breached and
# stays tripped until a person clears it or its reset policy does.
states = sa.Table(
    "breaker_states", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("breaker", sa.String(40), primary_key=True),
    sa.Column("tripped", sa.Boolean, nullable=False),
    sa.Column("current_value", Money(18, 6), nullable=True),
    sa.Column("limit_value", Money(18, 6), nullable=True),
    sa.Column("severity", sa.String(20), nullable=True),
    sa.Column("message", sa.String(400), nullable=True),
    sa.Column("since", UtcDateTime, nullable=False),
    sa.Column("tripped_at", UtcDateTime, nullable=True),
    sa.Column("cleared_by", sa.String(120), nullable=True),
    sa.Column("cleared_at", UtcDateTime, nullable=True),
    sa.Column("clear_reason", sa.String(400), nullable=True),
)

# One row per user: the last recorded trading state, the manual override, and the row whose
# lock serialises a user's order executions (so the order-rate count is exact).
trading_state = sa.Table(
    "breaker_trading_state", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(10), nullable=False),          # ACTIVE | REDUCING | HALTED
    sa.Column("since", UtcDateTime, nullable=False),
    sa.Column("reason", sa.String(400), nullable=True),
    sa.Column("manual_state", sa.String(10), nullable=False),   # the floor a person set
    sa.Column("manual_reason", sa.String(400), nullable=True),
    sa.Column("manual_by", sa.String(120), nullable=True),
    sa.Column("manual_at", UtcDateTime, nullable=True),
    sa.Column("lock_seq", sa.BigInteger, nullable=False),       # bumped to take the row lock
)

audit = sa.Table(
    "breaker_audit", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=True),             # NULL: deployment-wide
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("breaker", sa.String(40), nullable=True),
    sa.Column("from_state", sa.String(10), nullable=True),
    sa.Column("to_state", sa.String(10), nullable=True),
    sa.Column("current_value", Money(18, 6), nullable=True),
    sa.Column("limit_value", Money(18, 6), nullable=True),
    sa.Column("actor", sa.String(120), nullable=False),
    sa.Column("reason", sa.String(400), nullable=True),
    sa.Index("ix_breaker_audit_user", "user_id", "id"),
)

# Realized P&L inputs, one row per input event (source_key = event id), per book:
# "trades" (tradelog.PositionClosed, real money) and "ml" (mlloop.pnl, the model's paper ledger).
pnl_ledger = sa.Table(
    "breaker_pnl_ledger", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("book", sa.String(10), nullable=False),
    sa.Column("source_key", sa.String(80), nullable=False),
    sa.Column("pnl", Money(18, 4), nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("user_id", "book", "source_key", name="uq_breaker_pnl_source"),
    sa.Index("ix_breaker_pnl_user_time", "user_id", "book", "occurred_at"),
)

pnl_book = sa.Table(
    "breaker_pnl_book", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("book", sa.String(10), primary_key=True),
    sa.Column("cumulative", Money(18, 4), nullable=False),
    sa.Column("high_water", Money(18, 4), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

order_log = sa.Table(
    "breaker_order_log", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("order_id", sa.String(64), nullable=True),
    sa.Column("executed_at", UtcDateTime, nullable=False),
    sa.Index("ix_breaker_order_log_user_time", "user_id", "executed_at"),
)

slippage_log = sa.Table(
    "breaker_slippage_log", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("slippage", Money(18, 6), nullable=False),
    sa.Column("filled_at", UtcDateTime, nullable=False),
    sa.Index("ix_breaker_slippage_user_time", "user_id", "filled_at"),
)

inputs = sa.Table(
    "breaker_inputs", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("model_confidence", Money(18, 6), nullable=True),
    sa.Column("regime", sa.String(40), nullable=True),
    sa.Column("confidence_at", UtcDateTime, nullable=True),
)

kill_switches = sa.Table(
    "breaker_kill_switches", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("scope_key", sa.Integer, nullable=False),
    sa.Column("user_id", sa.Integer, nullable=True),             # NULL: deployment-wide
    sa.Column("kind", sa.String(20), nullable=False),           # ml_scoring | orders
    sa.Column("engaged", sa.Boolean, nullable=False),
    sa.Column("engaged_by", sa.String(120), nullable=False),
    sa.Column("engaged_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.String(400), nullable=False),
    sa.Column("released_by", sa.String(120), nullable=True),
    sa.Column("released_at", UtcDateTime, nullable=True),
    sa.Column("release_reason", sa.String(400), nullable=True),
    sa.Index("ix_breaker_kill_switches_active", "engaged", "kind", "scope_key"),
)
