"""Derived metadata of a position, computed from its legs and fills, never stored.

Pure functions (no database, no Flask). This is bookkeeping metadata, not risk math: the
strategy name and the exact max profit / max loss at expiry come from ``optionsmath``
(``None`` when unbounded or when legs expire on different dates, which needs a pricing
model — RiskGraph's job).

Conventions (the same as ``optionsmath`` and riskgraph): ``net_debit`` = sum(price *
quantity * multiplier), in dollars, a credit negative; in the snapshot it is the cost basis of
what is **open** (the open FIFO lots). ``max_profit`` / ``max_loss`` are P&L figures of what
is open at expiry, net of that net debit: **max_loss is the lowest P&L, negative for a loss**
(``-2050.0000``: you can lose 2,050). Realized P&L of what was already closed is reported
beside them, never mixed in.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from math import gcd

import optionsmath

ZERO = Decimal(0)
DEFAULT_MULTIPLIER = {"option": 100, "stock": 1, "future": 1}


_d = optionsmath.to_decimal


def _date(value) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def net_debit(legs: list[dict], fills: list[dict]) -> Decimal:
    mult = {leg["id"]: leg["multiplier"] for leg in legs}
    return sum((_d(f["price"]) * f["quantity"] * mult.get(f["leg_id"], 1) for f in fills), ZERO)


def fees(fills: list[dict]) -> Decimal:
    return sum((_d(f.get("fees") or 0) for f in fills), ZERO)


def derived_strategy(legs: list[dict]) -> str:
    """single, vertical, straddle, strangle, calendar, diagonal, butterfly, condor,
    iron_butterfly, iron_condor, stock, covered_call, protective_put, or custom
    (``optionsmath.classify_strategy``)."""
    return optionsmath.classify_strategy(legs)


def payoff_extremes(legs: list[dict], debit: Decimal) -> tuple[Decimal | None, Decimal | None]:
    """(max_profit, max_loss) at expiry in dollars as P&L, net of ``debit`` (max_loss
    negative for a loss, the convention of ``optionsmath``, riskgraph and the snapshot);
    None = unbounded or not computable without a pricing model (option legs on different
    expiries). The exact extremes come from ``optionsmath.payoff_extremes``."""
    return optionsmath.payoff_extremes(legs, debit)


def combo_units(quantities: list[int]) -> int:
    """How many units of the combo the leg quantities make (2/-2 is two verticals)."""
    g = 0
    for q in quantities:
        g = gcd(g, abs(q))
    return g or 1


def opening_fills(legs: list[dict], fills: list[dict]) -> list[dict]:
    """Fills in the direction of their leg (buying a long leg, selling a short one)."""
    sign = {leg["id"]: (1 if leg["quantity"] > 0 else -1) for leg in legs}
    return [f for f in fills if f["quantity"] * sign.get(f["leg_id"], 0) > 0]


def _next_settlement(legs: list[dict], at: dt.datetime, today: dt.date):
    """(DTE, settles_at) of the nearest option leg still alive at ``at``: calendar days from
    ``today`` (the exchange's date at ``at``) to its expiry date; (0, None) when every one
    has settled, (None, None) without options."""
    options = [leg for leg in legs if leg.get("settles_at") is not None]
    if not options:
        return None, None
    alive = [leg for leg in options if leg["settles_at"] > at]
    if not alive:
        return 0, None
    leg = min(alive, key=lambda x: x["settles_at"])
    return (_date(leg["expiry"]) - today).days, leg["settles_at"]


def metadata(legs: list[dict], books: dict, at: dt.datetime, today: dt.date) -> dict:
    """Derived metadata of what is open. ``legs`` carry ``open_quantity`` and, for options,
    ``settles_at``; ``books`` are the FIFO books of ``plugins.tradelog.lots`` by leg id."""
    from plugins.tradelog import lots
    t = lots.totals(books)
    open_legs = [dict(leg, quantity=leg["open_quantity"]) for leg in legs if leg["open_quantity"]]
    max_profit, max_loss = payoff_extremes(open_legs, t["net_debit"]) if open_legs else (None, None)
    dte, settles_at = _next_settlement(open_legs or legs, at, today)
    unrealized = [leg.get("unrealized_pnl") for leg in open_legs]
    return {
        "derived_strategy": derived_strategy(open_legs or legs),
        "net_debit": t["net_debit"],
        "fees": t["fees"],
        "open_fees": t["open_fees"],
        "realized_pnl": t["realized_pnl"],
        "unrealized_pnl": sum(unrealized, ZERO) if open_legs and None not in unrealized else None,
        "dte": dte,
        "settles_at": settles_at,
        "max_profit": max_profit,
        "max_loss": max_loss,
    }


def initial_risk(legs: list[dict], fills: list[dict]) -> Decimal | None:
    """What was put at risk at entry: max loss of the structure at the opening fills' net
    debit when defined, else the absolute opening net debit (None when that is 0)."""
    opening = opening_fills(legs, fills)
    debit = net_debit(legs, opening)
    _, max_loss = payoff_extremes(legs, debit)
    if max_loss is not None and max_loss < 0:
        return -max_loss
    return abs(debit) or None
