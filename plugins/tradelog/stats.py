"""Performance statistics of closed positions (what journal users ask for most), overall and
grouped the ways traders filter.

Counted per position, never per leg; P&L is realized (FIFO) and net of fees.
``initial_risk`` is what the position put at risk at entry (see ``derived.initial_risk``),
the "1R" of average R. Group-bys (``?group_by=``):

* ``strategy`` — the derived strategy of the position's legs as planned;
* ``underlying`` — the position's underlying;
* ``tag`` — each of the position's tags (a position with two tags counts in both; none:
  ``(untagged)``);
* ``weekday`` — the weekday of the trading day it was opened on (exchange time zone);
* ``dte_bucket`` — calendar days from that day to its nearest option expiry: ``0``,
  ``1-7``, ``8-30``, ``31-60``, ``61+`` (``none`` without options);
* ``roll_chain`` — the roll chain (``chain_id``); a chain's group also says how many
  positions it has.
"""
from __future__ import annotations

import json
from decimal import Decimal

import sqlalchemy as sa

from plugins.tradelog import derived, markettime
from plugins.tradelog.tables import legs, positions

ZERO = Decimal(0)
Q = Decimal("0.0001")
GROUP_BYS = ("strategy", "underlying", "tag", "weekday", "dte_bucket", "roll_chain")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


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
        drawdown = min(drawdown, cum - peak)
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


def dte_bucket(days: int | None) -> str:
    if days is None:
        return "none"
    if days <= 0:
        return "0"
    for top, name in ((7, "1-7"), (30, "8-30"), (60, "31-60")):
        if days <= top:
            return name
    return "61+"


def _keys(c: dict, group_by: str) -> list[str]:
    if group_by == "strategy":
        return [c["strategy"]]
    if group_by == "underlying":
        return [c["underlying"]]
    if group_by == "tag":
        return list(dict.fromkeys(c["tags"])) or ["(untagged)"]
    if group_by == "weekday":
        return [WEEKDAYS[c["opened_day"].weekday()] if c["opened_day"] else "none"]
    if group_by == "dte_bucket":
        return [c["dte_bucket"]]
    return [c["chain_id"]]


def closed_positions(conn, user_id: int) -> list[dict]:
    """The user's closed positions with what the group-bys need, ordered by close time."""
    rows = conn.execute(
        sa.select(positions.c.id, positions.c.symbol, positions.c.underlying, positions.c.tags,
                  positions.c.realized_pnl, positions.c.fees, positions.c.initial_risk, positions.c.opened_at,
                  positions.c.closed_at, positions.c.chain_id)
        .where(positions.c.user_id == user_id, positions.c.status == "closed")
        .order_by(positions.c.closed_at, positions.c.id)).fetchall()
    by_position: dict[str, list[dict]] = {r.id: [] for r in rows}
    if rows:
        q = sa.select(legs).join(positions, positions.c.id == legs.c.position_id) \
            .where(positions.c.user_id == user_id, positions.c.status == "closed", legs.c.source_leg_id.is_(None)) \
            .order_by(legs.c.seq)
        for leg in conn.execute(q):
            by_position[leg.position_id].append({"instrument_type": leg.instrument_type, "expiry": leg.expiry,
                                                 "strike": leg.strike, "right": leg.option_right,
                                                 "quantity": leg.quantity, "multiplier": leg.multiplier})
    out = []
    for r in rows:
        tags = r.tags
        if isinstance(tags, str):
            tags = json.loads(tags)
        opened_day = markettime.trading_day_of(r.opened_at, r.symbol) if r.opened_at else None
        expiries = [leg["expiry"] for leg in by_position[r.id] if leg["instrument_type"] == "option"]
        dte = (min(expiries) - opened_day).days if expiries and opened_day else None
        out.append({"id": r.id, "realized_pnl": r.realized_pnl, "fees": r.fees, "initial_risk": r.initial_risk,
                    "strategy": derived.derived_strategy(by_position[r.id]), "underlying": r.underlying,
                    "tags": list(tags or []), "opened_day": opened_day, "dte_bucket": dte_bucket(dte),
                    "chain_id": r.chain_id or r.id, "closed_at": r.closed_at})
    return out


def user_stats(conn, user_id: int, group_by: str | None = None) -> dict:
    """Overall and per derived strategy (always), and per ``group_by`` when asked:
    ``{overall, by_strategy: [...], group_by, groups: [{key, ...performance}]}``."""
    closed = closed_positions(conn, user_id)
    out = {"overall": performance(closed), "by_strategy": _grouped(closed, "strategy", "derived_strategy")}
    if group_by:
        out["group_by"] = group_by
        out["groups"] = _grouped(closed, group_by, "key")
    return out


def _grouped(closed: list[dict], group_by: str, name: str) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for c in closed:
        for k in _keys(c, group_by):
            groups.setdefault(k, []).append(c)
    order = sorted(groups, key=lambda k: (WEEKDAYS.index(k) if k in WEEKDAYS else 9, k)) \
        if group_by == "weekday" else sorted(groups)
    return [{name: k, **performance(groups[k])} for k in order]

