"""Black-Scholes-Merton and Black-76 prices and Greeks, implied volatility, normal CDFs.

Element-wise with numpy broadcasting; units as in the package docstring (theta per
calendar day, vega per vol point, rho per 1 % of r; T in years of 365 days). Formulas:
Hull, *Options, Futures, and Other Derivatives* (BSM with a continuous yield, Black's
model), Haug, *The Complete Guide to Option Pricing Formulas* (generalised BSM).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

DAYS_PER_YEAR = 365.0  # calendar-day count: T = days / 365, theta is per calendar day

GREEK_UNITS = {
    "price": "currency per unit of the underlying (one option, one share); "
             "position figures are x quantity x multiplier",
    "delta": "change in value per 1.00 move in the underlying price",
    "gamma": "change in delta per 1.00 move in the underlying price",
    "theta": "change in value per calendar day passing (annual theta / 365)",
    "vega": "change in value per 1 volatility point (sigma +0.01)",
    "rho": "change in value per 1 percentage point in the rate r (r +0.01)",
    "iv": "annualised volatility as a decimal (0.20 = 20 vol points)",
    "pnl": "currency: value - net_debit, where net_debit = sum(premium x quantity x multiplier)",
    "pop": "probability (0..1) that the expiry P&L is > 0 under a lognormal model",
}

_SQRT_2PI = math.sqrt(2.0 * math.pi)
# Stands in for 1/(sigma*sqrt(T)) when that is infinite (expiry, or zero vol): it sends d1/d2
# to +-"infinity" so N(d) becomes the 0/1 indicator of the intrinsic value, while d1**2 stays
# finite (no overflow) for any realistic log-moneyness.
_DEGENERATE_INV_VOL = 1e150


class ImpliedVolatilityError(ValueError):
    """No volatility reproduces the given price (it lies outside the no-arbitrage bounds)."""


def _is_call(right):
    arr = np.asarray(right)
    if arr.dtype == bool:
        return arr
    flat = [str(x).strip().lower()[:1] for x in arr.ravel()]
    if any(f not in ("c", "p") for f in flat):
        raise ValueError(f"right: expected 'call'/'put' (or 'c'/'p'), got {right!r}")
    return np.array([f == "c" for f in flat], dtype=bool).reshape(arr.shape)


def bsm_greeks(S, K, T, r, q, sigma, right) -> dict:
    """Black-Scholes-Merton price and Greeks per unit, broadcasting every argument.

    ``S`` spot, ``K`` strike, ``T`` years (calendar days / 365), ``r`` rate and ``q``
    dividend yield (continuous, decimals), ``sigma`` decimal vol, ``right`` 'call'/'put'
    (or 'c'/'p', or a bool array: True = call).

    Returns ``price``, ``delta``, ``gamma``, ``theta`` (per calendar day), ``vega`` (per vol
    point), ``rho`` (per 1% of r), each an ndarray of the broadcast shape. At T = 0 the
    price is the intrinsic value; with sigma = 0 and T > 0 it is the discounted intrinsic
    value on the forward; gamma and vega are 0 there, theta is the carry, and delta is
    e^{-qT} x (1 in the money, 0 out of it, 0.5 exactly at the strike).
    """
    S, K, T, r, q, sigma = (np.asarray(x, dtype=float) for x in (S, K, T, r, q, sigma))
    call = _is_call(right)
    T = np.maximum(T, 0.0)
    sqt = np.sqrt(T)
    v = sigma * sqt
    live = v > 0
    eq = np.exp(-q * T)
    er = np.exp(-r * T)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.log(S / K) + (r - q) * T  # log(forward / strike)
        # no time or no vol left: N(d) becomes the indicator of being in the money
        # (0.5 exactly at the kink, so delta there is the average of both sides)
        kink = np.where(m > 0, np.inf, np.where(m < 0, -np.inf, 0.0))
        d1 = np.where(live, m / np.where(live, v, 1.0) + 0.5 * v, kink)
        d2 = d1 - v
        pdf = np.where(live, np.exp(-0.5 * d1 * d1) / _SQRT_2PI, 0.0)
        seq = S * eq
        ker = K * er
        n1, n2 = ndtr(d1), ndtr(d2)
        nm1, nm2 = ndtr(-d1), ndtr(-d2)
        price = np.where(call, seq * n1 - ker * n2, ker * nm2 - seq * nm1)
        delta = np.where(call, eq * n1, -eq * nm1)
        gamma = np.where(live & (S > 0), eq * pdf / (S * np.where(live, v, 1.0)), 0.0)
        decay = np.where(live, -seq * pdf * sigma / (2.0 * np.where(live, sqt, 1.0)), 0.0)
        theta = np.where(call, decay + q * seq * n1 - r * ker * n2,
                         decay - q * seq * nm1 + r * ker * nm2)
        theta = np.where(T > 0, theta, 0.0)  # an expired option is settled: nothing decays
        vega = seq * pdf * sqt
        rho = np.where(call, T * ker * n2, -T * ker * nm2)
    return {
        "price": price,
        "delta": delta,
        "gamma": gamma,
        "theta": theta / DAYS_PER_YEAR,
        "vega": vega / 100.0,
        "rho": rho / 100.0,
    }


def bsm_price(S, K, T, r, q, sigma, right):
    """Black-Scholes-Merton price per unit (see ``bsm_greeks`` for the arguments)."""
    return bsm_greeks(S, K, T, r, q, sigma, right)["price"]


def implied_volatility(price, S, K, T, r, q, right, *, tol=1e-12, max_iter=100,
                       on_error="raise"):
    """Volatility that makes the BSM price equal ``price`` (vectorised, broadcasting).

    Safeguarded Newton on sigma inside a bisection bracket [0, 10] (widened up to 100
    if needed): every step that would leave the bracket, or stall, bisects instead, so it
    always converges for a price within the no-arbitrage bounds
    (discounted intrinsic on the forward <= price < S e^{-qT} for calls, < K e^{-rT} for
    puts). Outside them: ``on_error="raise"`` raises ``ImpliedVolatilityError``,
    ``"nan"`` returns NaN there. Returns a float for scalar input.
    """
    price, S, K, T, r, q = np.broadcast_arrays(*(np.asarray(x, dtype=float)
                                                 for x in (price, S, K, T, r, q)))
    call = np.broadcast_to(_is_call(right), price.shape)
    shape = price.shape
    price, S, K, T, r, q, call = (np.array(x, copy=True).ravel()
                                  for x in (price, S, K, T, r, q, call))
    floor = bsm_price(S, K, T, r, q, 0.0, call)
    cap = np.where(call, S * np.exp(-q * T), K * np.exp(-r * T))
    scale = np.maximum(np.maximum(S, K), 1e-300)
    slack = 1e-12 * scale
    ok = np.isfinite(price) & (T > 0) & (price >= floor - slack) & (price < cap)
    at_floor = ok & (price <= floor + slack)
    out = np.full(price.shape, np.nan)
    out[at_floor] = 0.0
    todo = np.flatnonzero(ok & ~at_floor)
    if todo.size:
        p, s, k, t, rr, qq, c = (x[todo] for x in (price, S, K, T, r, q, call))
        lo = np.zeros(todo.size)
        hi = np.full(todo.size, 10.0)
        for _ in range(5):  # extreme prices need more than 1000% vol
            low = bsm_price(s, k, t, rr, qq, hi, c) < p
            if not low.any():
                break
            hi = np.where(low, hi * 2.0, hi)
        # Brenner-Subrahmanyam start, kept inside the bracket.
        x = np.clip(math.sqrt(2 * math.pi) * p / (s * np.sqrt(t)), 0.05, 2.0)
        active = np.ones(todo.size, dtype=bool)
        for _ in range(max_iter):
            g = bsm_greeks(s, k, t, rr, qq, x, c)
            diff = g["price"] - p
            vega = g["vega"] * 100.0
            done = np.abs(diff) <= tol * np.maximum(p, scale[todo] * 1e-4)
            active &= ~done
            if not active.any():
                break
            hi = np.where(active & (diff > 0), x, hi)
            lo = np.where(active & (diff < 0), x, lo)
            with np.errstate(divide="ignore", invalid="ignore"):
                newton = x - diff / vega
            bisect = 0.5 * (lo + hi)
            good = np.isfinite(newton) & (newton > lo) & (newton < hi)
            step = np.where(good, newton, bisect)
            stalled = np.abs(step - x) <= 1e-15 * np.maximum(x, 1.0)
            active &= ~stalled
            x = np.where(active, step, x)
        out[todo] = x
    bad = ~np.isfinite(out)
    if bad.any() and on_error == "raise":
        i = int(np.flatnonzero(bad)[0])
        raise ImpliedVolatilityError(
            f"price {float(price[i])} is outside the no-arbitrage bounds "
            f"[{floor[i]:.6g}, {cap[i]:.6g}) for {'call' if call[i] else 'put'} "
            f"S={float(S[i])} K={float(K[i])} T={float(T[i])}"
            + (" (T must be > 0)" if T[i] <= 0 else "")
            + (f" ({int(bad.sum())} of {bad.size} prices)" if bad.size > 1 else ""))
    out = out.reshape(shape)
    return float(out) if out.ndim == 0 else out



def norm_cdf(x):
    """Standard normal CDF N(x), element-wise (scipy's ``ndtr``: accurate in both tails).
    The one normal CDF the repository prices with."""
    return ndtr(x)


def lognormal_cdf(x, spot, drift, sigma, T):
    """P(S_T <= x) for S_T = spot x exp((drift - sigma^2/2) T + sigma sqrt(T) Z), Z ~ N(0, 1).

    ``drift`` and ``sigma`` annual decimals, ``T`` years. With no time or no volatility S_T
    is the point ``spot x e^(drift T)`` and the CDF a step there (1 at and above it)."""
    x = np.asarray(x, dtype=float)
    if T <= 0 or sigma <= 0:
        forward = spot * math.exp(drift * max(T, 0.0))
        return (x >= forward).astype(float)
    with np.errstate(divide="ignore"):
        z = (np.log(x / spot) - (drift - 0.5 * sigma * sigma) * T) / (sigma * math.sqrt(T))
    return ndtr(z)


def black76_greeks(F, K, T, r, sigma, right) -> dict:
    """Black-76 price and Greeks per unit of an option on a future (or forward) priced ``F``.

    call = e^(-rT) (F N(d1) - K N(d2)), put = e^(-rT) (K N(-d2) - F N(-d1)),
    d1 = (ln(F/K) + sigma^2 T / 2) / (sigma sqrt T) (Black 1976; Hull ch. "Black's model").
    That is BSM with q = r, so price, delta (per 1.00 of F), gamma, theta and vega are
    ``bsm_greeks(F, K, T, r, r, sigma, right)``; rho differs: with F held fixed only the
    discount factor moves, rho = -T x V (per 1 % of r: -T x V / 100).
    """
    out = bsm_greeks(F, K, T, r, r, sigma, right)
    T = np.maximum(np.asarray(T, dtype=float), 0.0)
    out["rho"] = -T * out["price"] / 100.0
    return out


def black76_price(F, K, T, r, sigma, right):
    """Black-76 price per unit (see ``black76_greeks``)."""
    return bsm_price(F, K, T, r, r, sigma, right)
