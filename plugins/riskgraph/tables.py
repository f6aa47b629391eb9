"""The riskgraph plugin's tables (SQLAlchemy Core, its own metadata)."""
from __future__ import annotations

import sqlalchemy as sa

from app.db import JSONType, Money, UtcDateTime

metadata = sa.MetaData()

# Strategies a user has on their risk graph (seed "Risk Graph Service Layer", section 1).
strategies = sa.Table(
    "risk_graph_strategies", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("symbol", sa.String(20), nullable=False, default="SPX"),
    sa.Column("underlying", sa.String(20), nullable=False, default="I:SPX"),
    sa.Column("strategy", sa.String(20), nullable=False),   # single | vertical | butterfly
    sa.Column("side", sa.String(10), nullable=False),       # call | put
    sa.Column("strike", Money(12, 2), nullable=False),
    sa.Column("width", sa.Integer),
    sa.Column("dte", sa.Integer, nullable=False),
    sa.Column("expiration", sa.Date, nullable=False),
    sa.Column("debit", Money(14, 4)),
    sa.Column("visible", sa.Boolean, nullable=False, default=True),
    sa.Column("sort_order", sa.Integer, nullable=False, default=0),
    sa.Column("color", sa.String(20)),
    sa.Column("label", sa.String(100)),
    sa.Column("added_at", sa.BigInteger, nullable=False),   # epoch ms, as the seed's client sends
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_rg_strategies_user_active", "user_id", "is_active"),
)

# Immutable audit trail: one row per change of a strategy.
strategy_versions = sa.Table(
    "risk_graph_strategy_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("strategy_id", sa.String(36), sa.ForeignKey("risk_graph_strategies.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("debit", Money(14, 4)),
    sa.Column("visible", sa.Boolean, nullable=False),
    sa.Column("label", sa.String(100)),
    sa.Column("change_type", sa.String(20), nullable=False),
    sa.Column("change_reason", sa.String(255)),
    sa.Column("snapshot", JSONType, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("strategy_id", "version", name="uq_rg_strategy_versions"),
)

templates = sa.Table(
    "risk_graph_templates", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("symbol", sa.String(20), nullable=False, default="SPX"),
    sa.Column("strategy", sa.String(20), nullable=False),
    sa.Column("side", sa.String(10), nullable=False),
    sa.Column("strike_offset", sa.Integer, nullable=False, default=0),
    sa.Column("width", sa.Integer),
    sa.Column("dte_target", sa.Integer, nullable=False),
    sa.Column("debit_estimate", Money(14, 4)),
    sa.Column("is_public", sa.Boolean, nullable=False, default=False),
    sa.Column("share_code", sa.String(20), unique=True),
    sa.Column("use_count", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Risk artifacts computed for positions of the trade log (or saved strategies).
risk_artifacts = sa.Table(
    "risk_artifacts", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("position_id", sa.String(36)),
    sa.Column("strategy_id", sa.String(36)),
    sa.Column("source", sa.String(20), nullable=False),      # snapshot (Pattern A) | events (B)
    sa.Column("source_version", sa.Integer),
    sa.Column("inputs_hash", sa.String(64), nullable=False),
    sa.Column("inputs", JSONType, nullable=False),
    sa.Column("summary", JSONType, nullable=False),
    sa.Column("curves", JSONType, nullable=False),
    sa.Column("computed_at", UtcDateTime, nullable=False),
    sa.Index("ix_risk_artifacts_user_position", "user_id", "position_id", "computed_at"),
)

# Pattern B: riskgraph's own copy of a position's legs and fills, built from tradelog.events.
position_books = sa.Table(
    "rg_position_books", metadata,
    sa.Column("position_id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("book", JSONType, nullable=False),    # {symbol, status, legs: [...], fills: [...]}
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# The market inputs (spot, iv, r, q) a user last analysed a symbol with; event-driven
# recomputes reuse them, since the trade log's events carry no market data.
market_inputs = sa.Table(
    "rg_market_inputs", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True),
    sa.Column("symbol", sa.String(20), primary_key=True),
    sa.Column("inputs", JSONType, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
