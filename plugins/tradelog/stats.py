"""Performance statistics of closed positions (what journal users ask for most).

Counted per position, never per leg; P&L is realised and net of fees. ``initial_risk`` is
what the position put at risk at entry (see ``derived.initial_risk``), the "1R" of average R.
"""
from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from plugins.tradelog import derived
from plugins.tradelog.tables import legs, positions

ZERO = Decimal(0)
Q = Decimal("0.0001")


def performance(closed: list[dict]) -> dict:
    """``closed``: dicts with ``realized_pnl``, ``fees``, ``initial_risk`` (or None),
    ordered by ``closed_at``."""
    pnl = [c["realized_pnl"] for c in closed]
    wins = [p for p in pnl if p > 0]
    losses = [p for p in pnl if p < 0]
    gross_profit, gross_loss = sum(wins, ZERO), sum(losses, ZERO)
    r_multiples = [c["realized_pnl"] / c["initial_risk"] for c in closed if c.get("initial_risk")]
    peak = cum = drawdown = ZERO
    for p in pnl:
        cum += p
        peak = max(peak, cum)
        drawdown = max(drawdown, peak - cum)
    n = len(pnl)
    return {
        "closed_positions": n,
        "wins": len(wins),
        "losses": len(losses),
        "win_rate": (Decimal(len(wins)) / n).quantize(Q) if n else None,
        "gross_profit": gross_profit,
        "gross_loss": gross_loss,
        "profit_factor": (gross_profit / -gross_loss).quantize(Q) if losses else None,
        "expectancy": (sum(pnl, ZERO) / n).quantize(Q) if n else None,
        "average_r": (sum(r_multiples, ZERO) / len(r_multiples)).quantize(Q) if r_multiples else None,
        "max_drawdown": drawdown,
        "total_pnl": sum(pnl, ZERO),
        "total_fees": sum((c["fees"] or ZERO for c in closed), ZERO),
    }


def user_stats(conn, user_id: int) -> dict:
    """Overall and per derived strategy, for one user's closed positions."""
    rows = conn.execute(
        sa.select(positions.c.id, positions.c.realized_pnl, positions.c.fees, positions.c.initial_risk,
                  positions.c.closed_at)
        .where(positions.c.user_id == user_id, positions.c.status == "closed")
        .order_by(positions.c.closed_at, positions.c.id)).fetchall()
    by_position: dict[str, list[dict]] = {r.id: [] for r in rows}
    if rows:
        q = sa.select(legs).join(positions, positions.c.id == legs.c.position_id) \
            .where(positions.c.user_id == user_id, positions.c.status == "closed").order_by(legs.c.seq)
        for leg in conn.execute(q):
            by_position[leg.position_id].append({"instrument_type": leg.instrument_type, "expiry": leg.expiry,
                                                 "strike": leg.strike, "right": leg.option_right,
                                                 "quantity": leg.quantity, "multiplier": leg.multiplier})
    closed = [{"realized_pnl": r.realized_pnl, "fees": r.fees, "initial_risk": r.initial_risk,
               "strategy": derived.derived_strategy(by_position[r.id])} for r in rows]
    groups: dict[str, list[dict]] = {}
    for c in closed:
        groups.setdefault(c["strategy"], []).append(c)
    return {"overall": performance(closed),
            "by_strategy": [{"derived_strategy": name, **performance(group)}
                            for name, group in sorted(groups.items())]}
