"""The simulator's output records: the seed's pnl_events and tracked_idea_snapshots rows, and
the fills of the traded subset."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class PnlEvent:
    """One row of the seed's pnl_events (plus the running total, for convenience)."""

    idea_id: str
    trade_id: str | None
    event_time: datetime          # UTC, ms
    event_type: str               # 'fill' | 'mark' | 'settlement' ('adjustment' never simulated)
    pnl_delta: Decimal            # change of the idea's net P&L since its previous event
    fees: Decimal                 # included in pnl_delta (fill only)
    slippage: Decimal             # included in pnl_delta (fill only)
    underlying_price: Decimal
    cumulative_pnl: Decimal       # net P&L after this event


@dataclass(frozen=True, slots=True)
class IdeaSnapshot:
    """One row of the seed's tracked_idea_snapshots (taken on a trigger only)."""

    idea_id: str
    snapshot_time: datetime
    trigger_type: str
    mark_price: Decimal           # structure mid per share (signed like the debit)
    underlying_price: Decimal
    unrealized_pnl: Decimal       # net of fill costs for traded ideas
    pnl_percent: Decimal          # 100 * unrealized_pnl / risk_unit
    delta: Decimal
    gamma: Decimal
    theta: Decimal
    vega: Decimal
    vix_level: Decimal


@dataclass(frozen=True, slots=True)
class SimTrade:
    trade_id: str
    idea_id: str
    fill_time: datetime
    fill_price: Decimal           # per share, signed (worse than the idea's debit by slippage)
    quantity: int
    fees: Decimal
    slippage: Decimal             # dollars
    net_settlement_pnl: Decimal   # settlement P&L - fees - slippage
