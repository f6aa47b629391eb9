"""Value of a set of legs at expiry: intrinsic values, exact extremes and breakevens.

At one common expiry a position's value is piecewise linear in the underlying price S with
kinks only at the strikes, so its extremes over 0 <= S < inf are at S = 0, at a strike, or
unbounded by the slope beyond the highest strike (sum of the calls' and the linear legs'
weights); its zeros are found segment by segment. The scalar functions keep the caller's
number type (Decimal in, Decimal out); ``expiry_payoff`` is the vectorised float form.

A leg here is a mapping or an object with: ``instrument_type`` (or ``kind``: option, stock,
future), ``right`` (or ``option_right``: call/put), ``strike``, ``quantity`` (signed),
``multiplier`` (default 100 for options, 1 otherwise) and ``expiry`` (options).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import numpy as np

from optionsmath.decimals import to_decimal

_ALIASES = {"kind": ("instrument_type", "kind"), "right": ("right", "option_right"),
            "expiry": ("expiry", "expiration", "expiry_date")}


def leg_field(leg, name, default=None):
    """``leg``'s field ``name`` (its aliases too) from a mapping or an object."""
    for key in _ALIASES.get(name, (name,)):
        value = leg.get(key) if isinstance(leg, Mapping) else getattr(leg, key, None)
        if value is not None:
            return value
    return default


def leg_kind(leg) -> str:
    return str(leg_field(leg, "kind", "option")).lower()


def leg_is_call(leg) -> bool:
    return str(leg_field(leg, "right", "")).lower().startswith("c")


def leg_weight(leg):
    """quantity x multiplier (multiplier default: 100 for options, 1 for stocks/futures)."""
    mult = leg_field(leg, "multiplier")
    if mult is None:
        mult = 100 if leg_kind(leg) == "option" else 1
    return leg_field(leg, "quantity", 0) * mult


def leg_expiry(leg) -> dt.date | None:
    value = leg_field(leg, "expiry")
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])


def intrinsic(right, strike, price):
    """Value at expiry per unit: max(S - K, 0) for a call, max(K - S, 0) for a put (any
    number type; ``right`` 'call'/'put' or 'c'/'p')."""
    diff = price - strike
    zero = diff - diff
    if str(right).lower().startswith("c"):
        return diff if diff > zero else zero
    return -diff if diff < zero else zero


def expiry_payoff(strikes, calls, weights, prices, linear_weight=0.0):
    """Value at expiry of option legs (plus a linear part) at each price, as floats.

    ``strikes``, ``calls`` (bool), ``weights`` (quantity x multiplier): shape (L,);
    ``prices``: any shape P; returns shape P: sum_l w_l intrinsic_l(S) + linear_weight x S.
    """
    x = np.asarray(prices, dtype=float)
    strikes = np.asarray(strikes, dtype=float)
    diff = x[..., None] - strikes
    value = np.where(np.asarray(calls, dtype=bool), np.maximum(diff, 0.0), np.maximum(-diff, 0.0))
    return value @ np.asarray(weights, dtype=float) + float(linear_weight) * x


def _normalised(legs, net_debit):
    """(rows, debit, zero): rows of (is_option, is_call, strike, weight) in one number type,
    Decimal when the debit or any strike is a Decimal (else float)."""
    dec = isinstance(net_debit, Decimal) or any(isinstance(leg_field(leg, "strike"), Decimal) for leg in legs)
    conv = to_decimal if dec else float
    rows = []
    for leg in legs:
        option = leg_kind(leg) == "option"
        rows.append((option, option and leg_is_call(leg),
                     conv(leg_field(leg, "strike")) if option else None, leg_weight(leg)))
    debit = conv(net_debit)
    return rows, debit, debit - debit


def _pnl_at(rows, debit, s):
    total = debit - debit
    for option, call, strike, w in rows:
        if option:
            total += w * intrinsic("call" if call else "put", strike, s)
        else:
            total += w * s
    return total - debit


def _nodes_and_slope(rows, debit, zero):
    nodes = sorted({zero, *(strike for option, _, strike, _ in rows if option)})
    slope = sum((w for option, call, _, w in rows if not option or call), 0)
    return nodes, [_pnl_at(rows, debit, s) for s in nodes], slope


def _single_expiry(legs) -> bool:
    return len({leg_expiry(o) for o in legs if leg_kind(o) == "option"}) <= 1


def payoff_extremes(legs, net_debit):
    """(max_profit, max_loss) of the P&L at expiry over all prices 0 <= S < inf.

    P&L(S) = sum(weight x intrinsic(S)) + linear weight x S - ``net_debit``; max_loss is the
    lowest P&L (negative for a loss). Exact: the extremes of a piecewise-linear function are
    at S = 0, at a strike, or unbounded when the slope beyond the highest strike is > 0
    (profit: ``None``) or < 0 (loss: ``None``). Returns ``(None, None)`` for no legs, or for
    option legs on different expiries (that needs a model: ``optionsmath.analyze``).
    Number type: Decimal when the debit or a strike is a Decimal, else float.
    """
    legs = list(legs)
    if not legs or not _single_expiry(legs):
        return None, None
    rows, debit, zero = _normalised(legs, net_debit)
    _, values, slope = _nodes_and_slope(rows, debit, zero)
    return (None if slope > 0 else max(values)), (None if slope < 0 else min(values))


def payoff_breakevens(legs, net_debit) -> list:
    """Sorted prices S >= 0 where the expiry P&L (see ``payoff_extremes``) is 0: a node with
    P&L exactly 0, one root per segment whose ends differ in sign (linear interpolation,
    exact on a line), and beyond the highest strike the root of the last line. Only for a
    single expiry (else ``ValueError``)."""
    legs = list(legs)
    if not _single_expiry(legs):
        raise ValueError("legs: option legs on different expiries have no model-free breakevens")
    if not legs:
        return []
    rows, debit, zero = _normalised(legs, net_debit)
    nodes, values, slope = _nodes_and_slope(rows, debit, zero)
    roots = []
    for i, (x0, y0) in enumerate(zip(nodes, values)):
        if y0 == zero:
            roots.append(x0)
            continue
        if i + 1 < len(nodes):
            x1, y1 = nodes[i + 1], values[i + 1]
            if y1 != zero and (y0 < zero) != (y1 < zero):
                roots.append(x0 - y0 * (x1 - x0) / (y1 - y0))
    last = values[-1]
    if last != zero and slope != 0 and (last < zero) != (slope < 0):
        roots.append(nodes[-1] - last / slope)
    return sorted(roots)
