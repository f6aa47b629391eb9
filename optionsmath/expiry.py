"""Expiry analysis of a position: breakevens, max profit/loss, profit ranges, POP."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from optionsmath.bsm import DAYS_PER_YEAR, lognormal_cdf
from optionsmath.curves import _book, _curves, price_grid
from optionsmath.legs import Leg
from optionsmath.payoff import expiry_payoff


def _expiry_pnl(book, x):
    """Exact P&L at the (common) expiry at prices x: intrinsic values minus net debit."""
    return expiry_payoff(book.strike, book.call, book.weight, x, book.linear_weight) - book.net_debit


def _grid_roots(S, y, tol):
    """Zeros of sampled curves y (..., P): grid points at ~0 plus linear interpolation
    between the two grid points of each sign change. Returns a sorted list per curve."""
    y = np.atleast_2d(y)
    zero = np.abs(y) <= tol
    sign = np.where(zero, 0.0, np.sign(y))
    row, col = np.nonzero(sign[:, :-1] * sign[:, 1:] < 0)
    x0, x1, y0, y1 = S[col], S[col + 1], y[row, col], y[row, col + 1]
    cross = x0 - y0 * (x1 - x0) / (y1 - y0)
    zrow, zcol = np.nonzero(zero)
    rows = np.concatenate([row, zrow])
    roots = np.concatenate([cross, S[zcol]])
    order = np.lexsort((roots, rows))
    rows, roots = rows[order], roots[order]
    cuts = np.searchsorted(rows, np.arange(1, y.shape[0]))
    return [part.tolist() for part in np.split(roots, cuts)]


def _profit_ranges(f, roots, last_node):
    """Intervals (lo, hi) where f > 0, from the sorted roots; hi = inf for the open end."""
    edges = [0.0] + [float(x) for x in roots if x > 0] + [math.inf]
    ranges = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if math.isinf(hi):
            probe = max(lo, last_node) * 2.0 + 1.0
        else:
            probe = 0.5 * (lo + hi)
        if f(probe) > 0:
            if ranges and ranges[-1][1] == lo:
                ranges[-1][1] = hi
            else:
                ranges.append([lo, hi])
    return ranges


def expiry_profile(legs: Sequence[Leg], spot, r=0.0, q=0.0, valuation_date=None, *,
                   iv=None, pop_iv=None, drift=None, grid=None) -> dict:
    """Breakevens, max profit/loss and probability of profit at the first option expiry.

    When every option leg expires on that date the expiry P&L is piecewise linear in the
    price with kinks at the strikes, so everything is exact: breakevens are solved per
    segment between strikes (and beyond the last one from its slope); max profit/loss are
    the extremes over the strikes and S = 0, or unbounded (``None`` + flag) when the slope
    above the highest strike is > 0 (profit) or < 0 (loss). With later-dated legs still
    alive (calendars, diagonals) the curve comes from the model on ``grid`` and
    ``exact`` is False.

    POP = P(P&L > 0) = sum over the profit intervals (lo, hi) of F(hi) - F(lo), with F the
    lognormal CDF of S_T: drift ``drift`` (default r - q), volatility ``pop_iv`` (default:
    the iv of the option leg whose strike is nearest the spot), horizon T = that expiry;
    ``None`` for a position without options. ``max_loss`` is the lowest P&L (negative for
    a loss). With a dividend yield q > 0 a long far-dated call is worth less than the
    stock as S grows, so e.g. a call calendar is (correctly, in this model) flagged with
    unbounded loss.
    """
    book = _book(legs, spot, r, q, valuation_date, iv)
    return _expiry(book, spot, r, q, pop_iv, drift, grid)


def _expiry(book, spot, r, q, pop_iv, drift, grid):
    drift = (r - q) if drift is None else float(drift)
    if book.strike.size:
        T = float(book.years.min())
        if pop_iv is None:
            pop_iv = float(book.sigma[np.argmin(np.abs(book.strike - spot))])
    else:
        T, pop_iv = 0.0, 0.0 if pop_iv is None else pop_iv
    exact = bool(np.all(book.years == T))
    scale = max(1.0, abs(book.net_debit), float(np.abs(book.weight).sum()) * spot,
                abs(book.linear_weight) * spot)
    tol = 1e-9 * scale
    if exact:
        nodes = np.unique(np.concatenate([[0.0], book.strike]))
        fn = _expiry_pnl(book, nodes)
        slope = float(book.weight[book.call].sum()) + book.linear_weight
        roots = []
        for i in range(nodes.size):
            if abs(fn[i]) <= tol:
                roots.append(nodes[i])
            elif i + 1 < nodes.size and abs(fn[i + 1]) > tol and fn[i] * fn[i + 1] < 0:
                x0, x1, y0, y1 = nodes[i], nodes[i + 1], fn[i], fn[i + 1]
                roots.append(x0 - y0 * (x1 - x0) / (y1 - y0))
        if abs(fn[-1]) > tol and slope != 0 and math.copysign(1, fn[-1]) != math.copysign(1, slope):
            roots.append(nodes[-1] - fn[-1] / slope)
        roots = sorted(float(x) for x in roots)
        extremes = fn
        last_node = float(nodes[-1])

        def f(x):
            return float(_expiry_pnl(book, np.array([x]))[0])

        curve_on = None
    else:
        S = np.asarray(grid, dtype=float) if grid is not None else price_grid(
            book.legs, spot, None, iv=None, _book=book)
        curve = _curves(book, S, np.array([T * DAYS_PER_YEAR]), r, q, False)["pnl"][0]
        tau_left = np.maximum(book.years - T, 0.0)
        slope = float((book.weight * book.call * np.exp(-q * tau_left)).sum()) \
            + book.linear_weight
        roots = _grid_roots(S, curve, tol)[0]
        extremes = curve
        last_node = float(S[-1])

        def f(x):
            return float(np.interp(x, S, curve, left=curve[0], right=curve[-1] + slope * (x - S[-1])))

        curve_on = curve
    profit_unbounded = slope > 1e-12
    loss_unbounded = slope < -1e-12
    ranges = _profit_ranges(f, roots, last_node)
    if not book.strike.size:
        pop = None  # stock/future only: no expiry to measure the probability at
    elif ranges:
        lo = np.array([a for a, _ in ranges])
        hi = np.array([b for _, b in ranges])
        pop = float(np.sum(lognormal_cdf(hi, spot, drift, pop_iv, T)
                           - lognormal_cdf(lo, spot, drift, pop_iv, T)))
        pop = min(max(pop, 0.0), 1.0)
    else:
        pop = 0.0
    return {
        "years": T,
        "exact": exact,
        "breakevens": roots,
        "max_profit": None if profit_unbounded else float(np.max(extremes)),
        "max_profit_unbounded": bool(profit_unbounded),
        "max_loss": None if loss_unbounded else float(np.min(extremes)),
        "max_loss_unbounded": bool(loss_unbounded),
        "profit_ranges": [[float(a), None if math.isinf(b) else float(b)] for a, b in ranges],
        "pop": pop,
        "pop_iv": float(pop_iv) if book.strike.size else None,
        "pop_drift": drift,
        "_curve": curve_on,
    }

