"""The tradelog tables (SQLAlchemy Core, on this plugin's own ``metadata``).

``positions`` is the aggregate (versioned); ``position_versions`` keeps the representation of
every version with the system time it was recorded, so a past view can be reproduced
(``?as_of=``). Fills carry market time (``occurred_at``) and system time (``recorded_at``).
Derived metadata (strategy, net debit, DTE, max profit/loss) is never stored; only the
realised figures fixed at close (P&L, fees, initial risk) are.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from app.db import JSONType, Money, UtcDateTime

metadata = sa.MetaData()

positions = sa.Table(
    "tl_positions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # planned | open | closed
    sa.Column("symbol", sa.String(20), nullable=False),
    sa.Column("underlying", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("opened_at", UtcDateTime, nullable=True),
    sa.Column("closed_at", UtcDateTime, nullable=True),
    sa.Column("tags", JSONType, nullable=True),
    sa.Column("campaign_id", sa.String(36), nullable=True),
    sa.Column("source_order_id", sa.String(36), nullable=True),
    # Fixed at close: net of fees, in dollars (multiplier applied).
    sa.Column("realized_pnl", Money(30, 4), nullable=True),
    sa.Column("fees", Money(30, 4), nullable=True),
    sa.Column("initial_risk", Money(30, 4), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # Rolls (0002): the position this one was rolled from, and the chain's first position.
    sa.Column("rolled_from", sa.String(36), nullable=True),
    sa.Column("chain_id", sa.String(36), nullable=True),
    sa.Index("ix_tl_positions_user_status", "user_id", "status", "created_at"),
    sa.Index("ix_tl_positions_campaign", "campaign_id"),
    sa.Index("ix_tl_positions_chain", "user_id", "chain_id"),
)

legs = sa.Table(
    "tl_legs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("position_id", sa.String(36), sa.ForeignKey("tl_positions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),  # order within the position
    sa.Column("instrument_type", sa.String(10), nullable=False),  # option | stock | future
    sa.Column("expiry", sa.Date, nullable=True),
    sa.Column("strike", Money(18, 4), nullable=True),
    sa.Column("option_right", sa.String(4), nullable=True),  # call | put ("right" in JSON)
    sa.Column("quantity", sa.Integer, nullable=False),  # + long, - short
    sa.Column("multiplier", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Settlement (0002): AM | PM and cash | physical; null = the underlying's default.
    sa.Column("settlement_time", sa.String(2), nullable=True),
    sa.Column("settlement_type", sa.String(8), nullable=True),
    # A stock leg delivered by exercise/assignment names the option leg it came from.
    sa.Column("source_leg_id", sa.String(36), nullable=True),
    # The signed sum of the leg's fills, kept in the transaction that records each fill.
    sa.Column("open_quantity", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_tl_legs_position", "position_id", "seq"),
)

fills = sa.Table(
    "tl_fills", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("position_id", sa.String(36), sa.ForeignKey("tl_positions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("leg_id", sa.String(36), sa.ForeignKey("tl_legs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("price", Money(), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("fees", Money(), nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),  # market reality
    sa.Column("recorded_at", UtcDateTime, nullable=False),  # system reality
    sa.Column("order_id", sa.String(36), nullable=True),
    sa.Column("slippage", Money(30, 4), nullable=True),
    sa.Column("position_version", sa.Integer, nullable=False),  # the version this fill made
    sa.Column("seq", sa.Integer, nullable=False, server_default="0"),  # order within that version (0002)
    # 0002: trade | expiration | exercise | assignment | delivery, and the settlement it belongs to.
    sa.Column("kind", sa.String(12), nullable=False, server_default="trade"),
    sa.Column("settlement_id", sa.String(36), nullable=True),
    # Imports: a stable fingerprint of the broker execution (unique per user), so a file
    # imported twice records nothing twice.
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Column("user_id", sa.Integer, nullable=True),
    sa.Index("ix_tl_fills_position", "position_id", "position_version"),
    sa.Index("ux_tl_fills_fingerprint", "user_id", "fingerprint", unique=True),
)

position_versions = sa.Table(
    "tl_position_versions", metadata,
    sa.Column("position_id", sa.String(36), sa.ForeignKey("tl_positions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("representation", JSONType, nullable=False),
    sa.Index("ix_tl_position_versions_asof", "position_id", "recorded_at"),
)

journal_entries = sa.Table(
    "tl_journal_entries", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("position_id", sa.String(36), sa.ForeignKey("tl_positions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("object_of_reflection", sa.Text, nullable=False),
    sa.Column("bias_flags", JSONType, nullable=True),
    sa.Column("notes", sa.Text, nullable=True),
    sa.Column("phase", sa.String(12), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # 0002: the risk picture in force when it was written (published contracts only).
    sa.Column("position_version", sa.Integer, nullable=True),
    sa.Column("risk_artifact_id", sa.String(64), nullable=True),
    sa.Column("risk_strategy_id", sa.String(64), nullable=True),
    sa.Column("risk_strategy_version", sa.Integer, nullable=True),
    sa.Index("ix_tl_journal_position", "position_id", "created_at"),
)

orders = sa.Table(
    "tl_orders", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending | filled | cancelled
    sa.Column("order_type", sa.String(10), nullable=False),  # limit | market
    sa.Column("limit_price", Money(), nullable=True),  # per combo unit, + debit / - credit
    sa.Column("position_template", JSONType, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("position_id", sa.String(36), nullable=True),  # the position its execution created
    sa.Column("fill_price", Money(30, 4), nullable=True),
    sa.Column("slippage", Money(30, 4), nullable=True),
    sa.Column("filled_at", UtcDateTime, nullable=True),
    sa.Column("cancelled_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # 0002: an order given position_id executes into that position; true when it only
    # reduces (closes part or all of) its open legs.
    sa.Column("reduces_position", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_tl_orders_user_status", "user_id", "status", "created_at"),
)

risk_artifacts = sa.Table(
    "tl_risk_artifacts", metadata,
    sa.Column("position_id", sa.String(36), sa.ForeignKey("tl_positions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("artifact_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("computed_at", UtcDateTime, nullable=False),
    sa.Column("linked_at", UtcDateTime, nullable=False),
    # 0003: the position version the artifact was computed from (RiskArtifactComputed's
    # source_version), so a journal entry can name the risk picture of its version.
    sa.Column("position_version", sa.Integer, nullable=True),
)

# -- 0002 -----------------------------------------------------------------------------------
settlements = sa.Table(
    "tl_settlements", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("position_id", sa.String(36), sa.ForeignKey("tl_positions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("leg_id", sa.String(36), sa.ForeignKey("tl_legs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),  # expiration | exercise | assignment
    sa.Column("settlement_type", sa.String(8), nullable=False),  # cash | physical
    sa.Column("settlement_time", sa.String(2), nullable=False),  # AM | PM
    sa.Column("quantity", sa.Integer, nullable=False),  # the option quantity closed, signed like the fill
    sa.Column("price", Money(), nullable=False),  # per unit the option closed at (0, or intrinsic)
    sa.Column("settlement_value", Money(), nullable=True),  # the underlying's settlement value
    sa.Column("delivered_leg_id", sa.String(36), nullable=True),
    sa.Column("delivered_quantity", sa.Integer, nullable=True),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("position_version", sa.Integer, nullable=False),
    sa.Index("ix_tl_settlements_position", "position_id", "leg_id"),
)

settlement_prices = sa.Table(
    "tl_settlement_prices", metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("underlying", sa.String(20), primary_key=True),
    sa.Column("expiry", sa.Date, primary_key=True),
    sa.Column("settlement_time", sa.String(2), primary_key=True),
    sa.Column("price", Money(), nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
)

marks = sa.Table(
    "tl_marks", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("position_id", sa.String(36), sa.ForeignKey("tl_positions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("leg_id", sa.String(36), sa.ForeignKey("tl_legs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("price", Money(), nullable=False),
    sa.Column("marked_at", UtcDateTime, nullable=False),  # market time of the mark
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index("ix_tl_marks_leg", "position_id", "leg_id", "marked_at"),
)

# Columns 0002 adds to tables the baseline created (the migration adds the ones missing).
ADDED_0002 = {
    "tl_positions": ["rolled_from", "chain_id"],
    "tl_legs": ["settlement_time", "settlement_type", "source_leg_id", "open_quantity"],
    "tl_fills": ["kind", "settlement_id", "fingerprint", "user_id", "seq"],
    "tl_journal_entries": ["position_version", "risk_artifact_id", "risk_strategy_id", "risk_strategy_version"],
    "tl_orders": ["reduces_position"],
}

# -- 0003 -----------------------------------------------------------------------------------
imports = sa.Table(
    "tl_imports", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("format", sa.String(20), nullable=False),
    sa.Column("filename", sa.String(255), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("skip_bad_rows", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # queued | succeeded | rejected | failed
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),  # of the file's bytes
    sa.Column("report", JSONType, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    # 0004: imports run as jobs: the upload waits here for its job (cleared once imported).
    sa.Column("content", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=True),
    sa.Column("job_id", sa.String(36), nullable=True),
    sa.Column("error", JSONType, nullable=True),
    sa.Index("ix_tl_imports_user", "user_id", "created_at"),
)

# Columns 0004 adds to tl_imports.
ADDED_0004 = {"tl_imports": ["content", "job_id", "error"]}
