"""Expiry analysis of a position over the whole price domain 0 <= S < inf: breakevens, max
profit/loss, profit ranges and probability of profit at the first option expiry.

At the first expiry T the P&L is f(S) = (piecewise-linear part) + (smooth part) + lin x S -
net_debit, where the piecewise-linear part is the intrinsic value of the legs expiring then
(kinks at their strikes) and of later legs with no volatility left to them (sigma sqrt(tau) =
0: discounted forward intrinsic, a kink at K e^-(r-q)tau), and the smooth part the BSM value
of the later legs that still have time value (calendars, diagonals).

* No smooth part: f is piecewise linear; its extremes are at S = 0, at a kink, or unbounded by
  the slope beyond the last kink; roots are exact per segment (``exact: true``).
* Smooth part: f is evaluated on a grid over [0, hi] refined around every strike (log-spaced,
  plus +-6 sigma sqrt(tau) around each live strike, plus the kinks), where hi lies 10 sigma
  sqrt(tau) beyond the highest strike: past it (and below the matching low end) every live
  leg is its forward intrinsic to ~1e-23, so f is a line a x S + b there, handled
  analytically (the tail root -b/a, the limit b when a = 0). Stationary points of f between
  grid points (a sign change of f' = sum of deltas) and roots of f (a sign change of f) are
  solved with Brent's method.
* Tolerance: |f| <= 1e-9 x scale counts as 0, scale = sum |quantity x multiplier| x (strike +
  spot) + |linear| x spot + |net_debit| (>= 1): a P&L of a millionth of the money involved
  is no sign, so rounding noise never makes breakevens.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import brentq

from optionsmath.bsm import DAYS_PER_YEAR, bsm_greeks, lognormal_cdf
from optionsmath.curves import _book, _curves, price_grid
from optionsmath.legs import Leg
from optionsmath.payoff import expiry_payoff

REL_TOL = 1e-9          # |P&L| <= REL_TOL x scale is "zero"
_TAIL_SIGMAS = 10.0     # the domain's grid reaches this many sigma sqrt(tau) past the strikes
_REFINE_SIGMAS = 6.0    # dense points within this many sigma sqrt(tau) of each live strike
_LOG_POINTS = 1200
_REFINE_POINTS = 241


def _expiry_pnl(book, x):
    """Exact P&L at the (common) expiry at prices x: intrinsic values minus net debit."""
    return expiry_payoff(book.strike, book.call, book.weight, x, book.linear_weight) - book.net_debit


def position_scale(book, spot) -> float:
    """The money a position involves (see the module docstring), >= 1."""
    return max(1.0, float(np.sum(np.abs(book.weight) * (book.strike + spot)))
               + abs(book.linear_weight) * spot + abs(book.net_debit))


def _signs(y, tol):
    return np.where(np.abs(y) <= tol, 0, np.sign(y)).astype(np.int8)


def _sample_roots(S, y, tol, solve=None):
    """Zeros of a curve sampled at increasing S (one row): a sign change between neighbours,
    or across a run of near-zero samples, gives one root (``solve(lo, hi)`` if given, else
    linear interpolation, or the middle of the run); a run touching 0 without a sign change
    gives its middle; a run at either end of the range gives its inner end. Sorted list."""
    s = _signs(y, tol)
    nz = np.flatnonzero(s)
    if nz.size == 0:
        return []
    roots = []
    if nz[0] > 0:
        roots.append(float(S[nz[0] - 1]))
    a, b = nz[:-1], nz[1:]
    gap = b > a + 1
    change = s[a] != s[b]
    for i, j, crossing, run in zip(a[change | gap].tolist(), b[change | gap].tolist(),
                                   change[change | gap].tolist(), gap[change | gap].tolist()):
        if crossing and solve is not None:
            roots.append(solve(float(S[i]), float(S[j])))
        elif crossing and not run:
            x0, x1, y0, y1 = S[i], S[j], y[i], y[j]
            roots.append(float(x0 - y0 * (x1 - x0) / (y1 - y0)))
        else:
            roots.append(float(0.5 * (S[i + 1] + S[j - 1])))
    if nz[-1] < s.size - 1:
        roots.append(float(S[nz[-1] + 1]))
    return sorted(roots)


def _grid_roots(S, y, tol):
    """``_sample_roots`` for each row of y (..., P): a sorted list per curve."""
    y = np.atleast_2d(y)
    return [_sample_roots(S, row, tol) for row in y]


class ExpiryPnl:
    """The P&L at the first expiry as a function of the price, split as in the module
    docstring. ``value(x)``/``slope(x)`` evaluate it exactly (the model for live legs)."""

    def __init__(self, book, T, r, q):
        tau = np.maximum(book.years - T, 0.0)
        v = book.sigma * np.sqrt(tau)
        smooth = v > 0
        lin = ~smooth
        # piecewise-linear part: expired legs (tau = 0: strike K, weight w) and live legs
        # without volatility (kink at the forward strike, weight w e^-q tau)
        self.kink = np.where(tau > 0, book.strike * np.exp(-(r - q) * tau), book.strike)[lin]
        self.kink_weight = (book.weight * np.exp(-q * tau))[lin]
        self.kink_call = book.call[lin]
        self.strike, self.tau, self.sigma = book.strike[smooth], tau[smooth], book.sigma[smooth]
        self.call, self.weight = book.call[smooth], book.weight[smooth]
        self.r, self.q = r, q
        self.linear = book.linear_weight
        self.net_debit = book.net_debit
        # beyond every strike: f = a S + b
        self.tail_slope = float(self.kink_weight[self.kink_call].sum()
                                + (self.weight * np.exp(-q * self.tau))[self.call].sum() + self.linear)
        self.tail_intercept = float(-(self.kink_weight * self.kink)[self.kink_call].sum()
                                    - (self.weight * self.strike * np.exp(-r * self.tau))[self.call].sum()
                                    - self.net_debit)
        self.smooth = bool(smooth.any())

    def _live(self, x):
        g = bsm_greeks(np.asarray(x, dtype=float)[..., None], self.strike, self.tau, self.r, self.q,
                       self.sigma, self.call)
        return g["price"] @ self.weight, g["delta"] @ self.weight

    def value(self, x):
        x = np.asarray(x, dtype=float)
        out = expiry_payoff(self.kink, self.kink_call, self.kink_weight, x, self.linear) - self.net_debit
        if self.smooth:
            out = out + self._live(x)[0]
        return out

    def kink_slope(self, x):
        """Slope of the piecewise-linear part (plus the linear legs) just right of x."""
        x = np.asarray(x, dtype=float)[..., None]
        up = np.where(self.kink_call, x >= self.kink, -(x < self.kink).astype(float))
        return up @ self.kink_weight + self.linear

    def scalar(self, x):
        return float(self.value(np.array([x]))[0])

    def smooth_slope_plus(self, x, kink_slope):
        return float(self._live(np.array([x]))[1][0]) + kink_slope

    def domain(self, spot):
        """(lo, hi): below lo and above hi every leg is linear in S (see the docstring)."""
        points = [spot, *self.kink.tolist()]
        lows, highs = list(points), list(points)
        if self.smooth:
            z = _TAIL_SIGMAS * self.sigma * np.sqrt(self.tau) + abs(self.r - self.q) * self.tau
            lows += (self.strike * np.exp(-z)).tolist()
            highs += (self.strike * np.exp(z)).tolist()
        return 0.5 * min(lows), 2.0 * max(highs)

    def grid(self, spot):
        lo, hi = self.domain(spot)
        parts = [np.array([0.0, spot]), self.kink, np.geomspace(lo, hi, _LOG_POINTS)]
        for k, s, t in zip(self.strike, self.sigma, self.tau):
            w = _REFINE_SIGMAS * s * math.sqrt(t)
            parts.append(k * np.exp(np.linspace(-w, w, _REFINE_POINTS)))
        x = np.unique(np.concatenate(parts))
        return x[(x >= 0) & (x <= hi)]


def _expiry(book, spot, r, q, pop_iv, drift, grid):
    drift = (r - q) if drift is None else float(drift)
    if book.strike.size:
        T = float(book.years.min())
        if pop_iv is None:
            pop_iv = float(book.sigma[np.argmin(np.abs(book.strike - spot))])
    else:
        T, pop_iv = 0.0, 0.0 if pop_iv is None else pop_iv
    fn = ExpiryPnl(book, T, r, q)
    tol = REL_TOL * position_scale(book, spot)
    a, b = fn.tail_slope, fn.tail_intercept
    flat = abs(a) <= 1e-12 * max(1.0, float(np.abs(book.weight).sum()) + abs(book.linear_weight))
    if flat:
        a = 0.0
    if not fn.smooth:
        x = np.unique(np.concatenate([[0.0], fn.kink]))
        y = fn.value(x)
        roots = _sample_roots(x, y, tol)
        candidates = [y]
    else:
        x = fn.grid(spot)
        y = fn.value(x)
        roots = _sample_roots(x, y, tol, solve=lambda lo, hi: brentq(fn.scalar, lo, hi, xtol=1e-12, rtol=1e-13))
        candidates = [y, _stationary_values(fn, x, y)]
    # the tail past the last point: f = a S + b exactly
    x_end, y_end = float(x[-1]), float(y[-1])
    if a != 0.0 and abs(y_end) > tol and (y_end > 0) != (a > 0):
        roots.append(x_end - y_end / a)
    elif a != 0.0 and not np.any(np.abs(y) > tol):
        roots.append(x_end)  # ~0 everywhere up to here, then it leaves 0 along the tail
    if flat:
        candidates.append(np.array([b]))  # the limit as S -> inf (approached, maybe not reached)
    extremes = np.concatenate(candidates)
    roots = sorted(set(roots))
    ranges = _profit_ranges(fn.scalar, roots, x_end, tol)
    if not book.strike.size:
        pop = None  # stock/future only: no expiry to measure the probability at
    elif T <= 0 or pop_iv <= 0:
        # no time (or no vol): S_T is the point spot e^(drift T), a profit or not
        pop = 1.0 if fn.scalar(spot * math.exp(drift * max(T, 0.0))) > tol else 0.0
    elif ranges:
        lo = np.array([lo for lo, _ in ranges])
        hi = np.array([hi for _, hi in ranges])
        pop = float(np.sum(lognormal_cdf(hi, spot, drift, pop_iv, T) - lognormal_cdf(lo, spot, drift, pop_iv, T)))
        pop = min(max(pop, 0.0), 1.0)
    else:
        pop = 0.0
    curve_on = None
    if fn.smooth:
        S = np.asarray(grid, dtype=float) if grid is not None else price_grid(book.legs, spot, None, _book=book)
        curve_on = _curves(book, S, np.array([T * DAYS_PER_YEAR]), r, q, False)["pnl"][0]
    return {
        "years": T,
        "exact": not fn.smooth,
        "breakevens": roots,
        "max_profit": None if a > 0 else float(np.max(extremes)),
        "max_profit_unbounded": bool(a > 0),
        "max_loss": None if a < 0 else float(np.min(extremes)),
        "max_loss_unbounded": bool(a < 0),
        "profit_ranges": [[float(lo), None if math.isinf(hi) else float(hi)] for lo, hi in ranges],
        "pop": pop,
        "pop_iv": float(pop_iv) if book.strike.size else None,
        "pop_drift": drift,
        "tolerance": tol,
        "_curve": curve_on,
    }


def _stationary_values(fn, x, y):
    """f at its stationary points between grid points: within each interval the kinks'
    slope is constant (kinks are grid points), so a sign change of the smooth legs' delta
    plus that slope brackets a root of f', solved with Brent's method. Only intervals whose
    ends are near the sampled extremes are refined (others cannot hold the global one)."""
    mid = 0.5 * (x[:-1] + x[1:])
    ks = fn.kink_slope(mid)
    delta = fn._live(x)[1]
    left, right = delta[:-1] + ks, delta[1:] + ks
    idx = np.flatnonzero(left * right < 0)
    if not idx.size:
        return np.array([])
    span = max(float(y.max() - y.min()), 1e-12)
    near = (np.minimum(y[idx], y[idx + 1]) <= y.min() + 0.01 * span) | \
           (np.maximum(y[idx], y[idx + 1]) >= y.max() - 0.01 * span)
    out = []
    for i in idx[near].tolist():
        k = float(ks[i])
        root = brentq(fn.smooth_slope_plus, float(x[i]), float(x[i + 1]), args=(k,), xtol=1e-12, rtol=1e-13)
        out.append(fn.scalar(root))
    return np.array(out)


def _profit_ranges(f, roots, last_node, tol=0.0):
    """Intervals (lo, hi) where f > tol, from the sorted roots; hi = inf for the open end."""
    edges = [0.0] + [float(x) for x in roots if x > 0] + [math.inf]
    ranges = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if math.isinf(hi):
            probe = max(lo, last_node) * 2.0 + 1.0
        else:
            probe = 0.5 * (lo + hi)
        if f(probe) > tol:
            if ranges and ranges[-1][1] == lo:
                ranges[-1][1] = hi
            else:
                ranges.append([lo, hi])
    return ranges


def expiry_profile(legs: Sequence[Leg], spot, r=0.0, q=0.0, valuation_date=None, *,
                   iv=None, pop_iv=None, drift=None, grid=None) -> dict:
    """Breakevens, max profit/loss, profit ranges and probability of profit at the first
    option expiry, over the whole price domain 0 <= S < inf (see the module docstring).

    ``exact`` is True when the expiry P&L is piecewise linear (no leg with time value left
    then): everything is closed form. Otherwise later legs are valued by the model and the
    extremes and roots are solved on a refined grid with analytic tails. Max profit / loss:
    ``None`` + ``*_unbounded: true`` when the slope as S -> inf is > 0 / < 0; when it is 0
    the limit there is a candidate (a call calendar with q = 0 tends to K (1 - e^-r tau)).

    POP = P(P&L > 0) = sum over the profit intervals (lo, hi) of F(hi) - F(lo), with F the
    lognormal CDF of S_T: drift ``drift`` (default r - q), volatility ``pop_iv`` (default:
    the iv of the option leg whose strike is nearest the spot), horizon T = that expiry.
    With T = 0 (a leg expiring at the valuation time) or no volatility S_T is a point mass
    at spot e^(drift T): POP is 1 if the P&L there is > 0 (beyond the tolerance), else 0.
    ``None`` for a position without options. ``max_loss`` is the lowest P&L (negative for
    a loss). With a dividend yield q > 0 a long far-dated call is worth less than the
    stock as S grows, so e.g. a call calendar is (correctly, in this model) flagged with
    unbounded loss.
    """
    book = _book(legs, spot, r, q, valuation_date, iv)
    return _expiry(book, spot, r, q, pop_iv, drift, grid)
