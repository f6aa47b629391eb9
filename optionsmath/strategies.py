"""Strategy names of a set of legs, in the trader's words (single, vertical, iron_condor...).

Legs are mappings or objects (see ``optionsmath.payoff`` for the fields); strikes compare
as Decimals so 100, 100.0 and "100.00" are one strike.
"""
from __future__ import annotations

from decimal import Decimal

from optionsmath.payoff import leg_expiry, leg_field, leg_kind

STRATEGY_NAMES = ("single", "vertical", "straddle", "strangle", "calendar", "diagonal", "butterfly",
                  "condor", "iron_butterfly", "iron_condor", "stock", "covered_call", "protective_put",
                  "custom")


def _strike(leg) -> Decimal:
    value = leg_field(leg, "strike")
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _right(leg) -> str:
    return "call" if str(leg_field(leg, "right", "")).lower().startswith("c") else "put"


def classify_strategy(legs) -> str:
    """One of ``STRATEGY_NAMES``.

    Options only: 1 leg single; 2 legs of equal size: same expiry -> vertical (same right,
    opposite sides, two strikes), straddle/strangle (a call and a put on the same side, one
    or two strikes); different expiries -> calendar (same strike) / diagonal (two strikes)
    with the same right on opposite sides; 3 legs +1/-2/+1 (or the mirror) at evenly spaced
    strikes of one right -> butterfly; 4 legs of one right +1/-1/-1/+1 (or mirror) ->
    condor; two puts below two calls, all of one size, long-short-short-long (or mirror)
    -> iron_butterfly (inner strikes equal) / iron_condor. With a stock: one long stock +
    one short call -> covered_call, + one long put -> protective_put; a lone stock ->
    stock. Anything else -> custom.
    """
    legs = list(legs)
    opts = [leg for leg in legs if leg_kind(leg) == "option"]
    others = [leg for leg in legs if leg_kind(leg) != "option"]
    qty = lambda leg: leg_field(leg, "quantity", 0)  # noqa: E731
    if not opts:
        return "stock" if others and all(leg_kind(o) == "stock" for o in others) and len(others) == 1 \
            else ("single" if len(others) == 1 else "custom")
    if others:
        if len(others) == 1 and leg_kind(others[0]) == "stock" and len(opts) == 1:
            stock, opt = others[0], opts[0]
            if qty(stock) > 0 and _right(opt) == "call" and qty(opt) < 0:
                return "covered_call"
            if qty(stock) > 0 and _right(opt) == "put" and qty(opt) > 0:
                return "protective_put"
        return "custom"
    if len(opts) == 1:
        return "single"
    same_expiry = len({leg_expiry(o) for o in opts}) == 1
    k = sorted(opts, key=lambda o: (_strike(o), _right(o)))
    q = [qty(o) for o in k]
    strikes = [_strike(o) for o in k]
    rights = [_right(o) for o in k]
    if len(opts) == 2:
        if abs(q[0]) != abs(q[1]):
            return "custom"
        if same_expiry:
            if rights[0] == rights[1] and q[0] == -q[1] and strikes[0] != strikes[1]:
                return "vertical"
            if rights[0] != rights[1] and q[0] == q[1]:
                return "straddle" if strikes[0] == strikes[1] else "strangle"
            return "custom"
        if rights[0] == rights[1] and q[0] == -q[1]:
            return "calendar" if strikes[0] == strikes[1] else "diagonal"
        return "custom"
    if not same_expiry:
        return "custom"
    if len(opts) == 3 and len(set(rights)) == 1 and strikes[0] < strikes[1] < strikes[2] \
            and strikes[1] - strikes[0] == strikes[2] - strikes[1] and q[0] == q[2] and q[1] == -2 * q[0]:
        return "butterfly"
    if len(opts) == 4:
        if len(set(rights)) == 1 and strikes[0] < strikes[1] < strikes[2] < strikes[3] \
                and q[0] == q[3] == -q[1] == -q[2]:
            return "condor"
        puts = [o for o in k if _right(o) == "put"]
        calls = [o for o in k if _right(o) == "call"]
        if len(puts) == 2 and len(calls) == 2:
            p_lo, p_hi = puts
            c_lo, c_hi = calls
            size = abs(qty(p_lo))
            if all(abs(qty(o)) == size for o in k) and _strike(p_lo) != _strike(p_hi) \
                    and _strike(c_lo) != _strike(c_hi) and _strike(p_hi) <= _strike(c_lo) \
                    and qty(p_lo) == -qty(p_hi) == -qty(c_lo) == qty(c_hi):
                return "iron_butterfly" if _strike(p_hi) == _strike(c_lo) else "iron_condor"
    return "custom"
