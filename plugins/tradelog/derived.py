"""Derived metadata of a position, computed from its legs and fills, never stored.

Pure functions (no database, no Flask). This is bookkeeping metadata, not risk math: the
payoff at expiry of a position whose option legs share one expiry is piecewise linear with
kinks at the strikes, so evaluating it at 0, at each strike and its slope beyond the highest
strike gives the exact max profit / max loss (``None`` when unbounded or when legs expire on
different dates, which needs a pricing model — RiskGraph's job).

Conventions: ``net_debit`` = sum(price * quantity * multiplier) over fills, in dollars; a
credit is negative. ``max_loss`` is a positive amount of dollars (the most you can lose).
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


def dte(legs: list[dict], today: dt.date) -> int | None:
    """Days from ``today`` to the nearest expiry not yet past (0 when all are past; None
    when no leg expires)."""
    expiries = [_date(leg["expiry"]) for leg in legs if leg.get("expiry")]
    if not expiries:
        return None
    ahead = [(e - today).days for e in expiries if e >= today]
    return min(ahead) if ahead else 0


def derived_strategy(legs: list[dict]) -> str:
    """single, vertical, straddle, strangle, calendar, diagonal, butterfly, condor,
    iron_butterfly, iron_condor, stock, covered_call, protective_put, or custom
    (``optionsmath.classify_strategy``)."""
    return optionsmath.classify_strategy(legs)


def payoff_extremes(legs: list[dict], debit: Decimal) -> tuple[Decimal | None, Decimal | None]:
    """(max_profit, max_loss) at expiry in dollars, net of ``debit``; None = unbounded or
    not computable without a pricing model (option legs on different expiries). The exact
    extremes come from ``optionsmath.payoff_extremes``; here max_loss is a positive amount
    (the most you can lose), see the module docstring."""
    best, worst = optionsmath.payoff_extremes(legs, debit)
    return best, (None if worst is None else -worst)


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


def metadata(legs: list[dict], fills: list[dict], today: dt.date) -> dict:
    debit = net_debit(legs, fills)
    max_profit, max_loss = payoff_extremes(legs, debit)
    return {
        "derived_strategy": derived_strategy(legs),
        "net_debit": debit,
        "fees": fees(fills),
        "dte": dte(legs, today),
        "max_profit": max_profit,
        "max_loss": max_loss,
    }


def initial_risk(legs: list[dict], fills: list[dict]) -> Decimal | None:
    """What was put at risk at entry: max loss of the structure at the opening fills' net
    debit when defined, else the absolute opening net debit (None when that is 0)."""
    opening = opening_fills(legs, fills)
    debit = net_debit(legs, opening)
    _, max_loss = payoff_extremes(legs, debit)
    if max_loss is not None and max_loss > 0:
        return max_loss
    return abs(debit) or None
