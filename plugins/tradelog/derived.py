"""Derived metadata of a position, computed from its legs and fills, never stored.

Pure functions (no database, no Flask). This is bookkeeping metadata, not risk math: the
payoff at expiry of a position whose option legs share one expiry is piecewise linear with
kinks at the strikes, so evaluating it at 0, at each strike and its slope beyond the highest
strike gives the exact max profit / max loss (``None`` when unbounded or when legs expire on
different dates, which needs a pricing model — RiskGraph's job).

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

ZERO = Decimal(0)
DEFAULT_MULTIPLIER = {"option": 100, "stock": 1, "future": 1}


def _d(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


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
    iron_butterfly, iron_condor, stock, covered_call, protective_put, or custom."""
    opts = [leg for leg in legs if leg["instrument_type"] == "option"]
    others = [leg for leg in legs if leg["instrument_type"] != "option"]
    if not opts:
        return "stock" if others and all(o["instrument_type"] == "stock" for o in others) and len(others) == 1 \
            else ("single" if len(others) == 1 else "custom")
    if others:
        if len(others) == 1 and others[0]["instrument_type"] == "stock" and len(opts) == 1:
            stock, opt = others[0], opts[0]
            if stock["quantity"] > 0 and opt["right"] == "call" and opt["quantity"] < 0:
                return "covered_call"
            if stock["quantity"] > 0 and opt["right"] == "put" and opt["quantity"] > 0:
                return "protective_put"
        return "custom"
    if len(opts) == 1:
        return "single"
    same_expiry = len({_date(o["expiry"]) for o in opts}) == 1
    k = sorted(opts, key=lambda o: (_d(o["strike"]), o["right"]))
    q = [o["quantity"] for o in k]
    if len(opts) == 2:
        a, b = k
        if abs(a["quantity"]) != abs(b["quantity"]):
            return "custom"
        if same_expiry:
            if a["right"] == b["right"] and a["quantity"] == -b["quantity"] and a["strike"] != b["strike"]:
                return "vertical"
            if a["right"] != b["right"] and a["quantity"] == b["quantity"]:
                return "straddle" if _d(a["strike"]) == _d(b["strike"]) else "strangle"
            return "custom"
        if a["right"] == b["right"] and a["quantity"] == -b["quantity"]:
            return "calendar" if _d(a["strike"]) == _d(b["strike"]) else "diagonal"
        return "custom"
    if not same_expiry:
        return "custom"
    strikes = [_d(o["strike"]) for o in k]
    rights = [o["right"] for o in k]
    if len(opts) == 3 and len(set(rights)) == 1 and strikes[0] < strikes[1] < strikes[2] \
            and strikes[1] - strikes[0] == strikes[2] - strikes[1] and q[0] == q[2] and q[1] == -2 * q[0]:
        return "butterfly"
    if len(opts) == 4:
        if len(set(rights)) == 1 and strikes[0] < strikes[1] < strikes[2] < strikes[3] \
                and q[0] == q[3] == -q[1] == -q[2]:
            return "condor"
        puts = [o for o in k if o["right"] == "put"]
        calls = [o for o in k if o["right"] == "call"]
        if len(puts) == 2 and len(calls) == 2:
            p_lo, p_hi = puts
            c_lo, c_hi = calls
            size = abs(p_lo["quantity"])
            if all(abs(o["quantity"]) == size for o in k) and p_lo["strike"] != p_hi["strike"] \
                    and c_lo["strike"] != c_hi["strike"] and _d(p_hi["strike"]) <= _d(c_lo["strike"]) \
                    and p_lo["quantity"] == -p_hi["quantity"] == -c_lo["quantity"] == c_hi["quantity"]:
                return "iron_butterfly" if _d(p_hi["strike"]) == _d(c_lo["strike"]) else "iron_condor"
    return "custom"


def payoff_extremes(legs: list[dict], debit: Decimal) -> tuple[Decimal | None, Decimal | None]:
    """(max_profit, max_loss) at expiry in dollars as P&L, net of ``debit`` (max_loss
    negative for a loss); None = unbounded or not computable without a pricing model
    (option legs on different expiries)."""
    if not legs:
        return None, None
    opts = [leg for leg in legs if leg["instrument_type"] == "option"]
    if len({_date(o["expiry"]) for o in opts}) > 1:
        return None, None

    def value(s: Decimal) -> Decimal:
        total = ZERO
        for leg in legs:
            m = leg["quantity"] * leg["multiplier"]
            if leg["instrument_type"] == "option":
                k = _d(leg["strike"])
                total += m * (max(s - k, ZERO) if leg["right"] == "call" else max(k - s, ZERO))
            else:
                total += m * s
        return total - debit

    points = sorted({ZERO, *(_d(o["strike"]) for o in opts)})
    values = [value(s) for s in points]
    slope = sum((leg["quantity"] * leg["multiplier"] for leg in legs
                 if leg["instrument_type"] != "option" or leg["right"] == "call"), 0)
    best, worst = max(values), min(values)
    max_profit = None if slope > 0 else best
    max_loss = None if slope < 0 else worst
    return max_profit, max_loss


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
