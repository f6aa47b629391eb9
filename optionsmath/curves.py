"""A position flattened into arrays, and its value/P&L/Greeks on a price grid x dates.

The fast path of the position analysis: every option leg, every price and a block of dates
in one broadcast evaluation, legs summed with batched matrix products, puts through
put-call parity (see ``_option_block``). Units as in the package docstring.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import ndtr

from optionsmath.bsm import (DAYS_PER_YEAR, _DEGENERATE_INV_VOL, _SQRT_2PI, ImpliedVolatilityError,
                             bsm_price, implied_volatility)
from optionsmath.legs import InvalidLeg, Leg

@dataclass
class _Book:
    """A position flattened into arrays: option legs plus the linear (stock/future) part."""

    legs: list
    strike: np.ndarray       # (L,) option legs only
    years: np.ndarray        # (L,)
    sigma: np.ndarray        # (L,)
    call: np.ndarray         # (L,) bool
    weight: np.ndarray       # (L,) quantity x multiplier
    linear_weight: float     # sum of quantity x multiplier of stock/future legs
    net_debit: float         # sum of premium x quantity x multiplier (all legs)
    option_index: list       # positions in ``legs`` of the option legs
    leg_iv: list             # iv used per leg (None for linear legs)
    leg_years: list          # years to expiry per leg (None for linear legs)
    black76: bool = False    # options on futures: q = r and rho = -T x V (see bsm.black76_greeks)


def _book(legs: Sequence[Leg], spot, r, q, valuation_date, iv=None, black76=False) -> _Book:
    legs = list(legs)
    if not legs:
        raise InvalidLeg("legs: at least one leg is needed")
    for i, leg in enumerate(legs):
        if not isinstance(leg, Leg):
            raise InvalidLeg(f"legs[{i}]: expected a Leg, got {type(leg).__name__}")
    strike, years, sigma, call, weight, opt_idx = [], [], [], [], [], []
    leg_iv, leg_years = [], []
    linear = 0.0
    net_debit = 0.0
    for i, leg in enumerate(legs):
        w = float(leg.quantity * leg.multiplier)
        if leg.kind != "option":
            linear += w
            net_debit += (spot if leg.premium is None else leg.premium) * w
            leg_iv.append(None)
            leg_years.append(None)
            continue
        t = leg.years_to_expiry(valuation_date)
        vol = leg.iv if leg.iv is not None else iv
        if vol is None:
            if leg.premium is None or t <= 0:
                raise InvalidLeg(f"legs[{i}].iv: required (no iv, no default iv, and no "
                                 "premium to imply it from)")
            try:
                vol = implied_volatility(leg.premium, spot, leg.strike, t, r, q, leg.right)
            except ImpliedVolatilityError as exc:
                raise InvalidLeg(f"legs[{i}].iv: cannot imply it from the premium: {exc}") \
                    from None
        vol = float(vol)
        premium = leg.premium
        if premium is None:
            premium = float(bsm_price(spot, leg.strike, t, r, q, vol, leg.right))
        net_debit += premium * w
        strike.append(leg.strike)
        years.append(t)
        sigma.append(vol)
        call.append(leg.right == "call")
        weight.append(w)
        opt_idx.append(i)
        leg_iv.append(vol)
        leg_years.append(t)
    return _Book(legs, np.array(strike, float), np.array(years, float), np.array(sigma, float),
                 np.array(call, bool), np.array(weight, float), linear, net_debit, opt_idx,
                 leg_iv, leg_years, black76)


MODELS = ("bsm", "black76")


def check_model(model) -> bool:
    """True for Black-76 (options on futures: the grid price is the future's, q = r and rho =
    -T x V), False for Black-Scholes-Merton; anything else is a ValueError naming ``model``."""
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    return model == "black76"


# Dates are evaluated in blocks of at most this many (date, leg, price) points so that the
# few temporaries stay small and are reused by the allocator: on the benchmark (4 legs x
# 10 dates x 1,001 prices) one 40k-point pass was ~1.6x slower, the time going to page
# faults on freshly mapped buffers; blocks of 8k-25k points were the fastest.
_BLOCK_POINTS = 24576


def _option_curves(S, logS, inv_S, strike, tau, sigma, call, weight, r, q, greeks, black76=False):
    """Sum over option legs of value (and Greeks) on a grid, for several dates at once.

    S, logS, inv_S: (P,); strike, sigma, call, weight: (L,); tau: (D, L) years left.
    Returns (D, P) arrays, computed in blocks of dates (see ``_BLOCK_POINTS``).
    """
    D, L = tau.shape
    per_block = max(1, _BLOCK_POINTS // max(1, L * S.size))
    blocks = -(-D // per_block)
    per_block = -(-D // blocks)  # even blocks
    names = ("value", "delta", "gamma", "theta", "vega", "rho") if greeks else ("value",)
    out = {name: np.empty((D, S.size)) for name in names}
    for start in range(0, D, per_block):
        part = _option_block(S, logS, inv_S, strike, tau[start:start + per_block], sigma,
                             call, weight, r, q, greeks, black76)
        for name in names:
            out[name][start:start + per_block] = part[name]
    return out


def _option_block(S, logS, inv_S, strike, tau, sigma, call, weight, r, q, greeks, black76=False):
    """``_option_curves`` for one block of dates, all legs and prices in one pass.

    Calls are priced directly and puts by put-call parity, whose correction is linear in S,
    so it is added once per date after summing the legs. The leg sums are batched matrix
    products ((D,k,L) @ (D,L,P)), so the only (D,L,P)-sized work is d1, d2, N(d1), N(d2)
    and, for Greeks, the normal density.
    """
    tau = np.maximum(tau, 0.0)
    sqt = np.sqrt(tau)
    v = sigma * sqt                                   # (D, L)
    live = v > 0
    inv_v = np.where(live, 1.0 / np.where(live, v, 1.0), _DEGENERATE_INV_VOL)
    eq = np.exp(-q * tau)
    er = np.exp(-r * tau)
    put = ~call
    # d1 = (log S - log K + (r - q) tau) / v + v / 2  =  log S * a + b
    b = ((r - q) * tau - np.log(strike)) * inv_v + 0.5 * v
    d1 = logS * inv_v[:, :, None]
    d1 += b[:, :, None]
    d2 = d1 - v[:, :, None]
    c1 = weight * eq                                  # on S * N(d1)
    c2 = weight * strike * er                         # on N(d2)
    n1 = ndtr(d1)
    put_s = (c1 * put).sum(axis=1)[:, None]           # parity: put = call - S e^-qt + K e^-rt
    put_k = (c2 * put).sum(axis=1)[:, None]
    n2 = ndtr(d2, out=d2)
    if not greeks:
        a1 = np.matmul(c1[:, None, :], n1)[:, 0, :]   # sum_l c1 N(d1)
        a2 = np.matmul(c2[:, None, :], n2)[:, 0, :]
        return {"value": S * (a1 - put_s) - a2 + put_k}
    # Theta's carry terms only count legs with time left: an expired leg is settled.
    alive = tau > 0
    a1, a1_alive, a1_tau = np.moveaxis(np.matmul(np.stack([c1, c1 * alive, c1 * tau], axis=1), n1), 1, 0)
    a2, a2_alive, rho = np.moveaxis(
        np.matmul(np.stack([c2, c2 * alive, c2 * tau], axis=1), n2), 1, 0)
    put_s_alive = (c1 * put * alive).sum(axis=1)[:, None]
    put_k_alive = (c2 * put * alive).sum(axis=1)[:, None]
    pdf = np.square(d1, out=d1)
    pdf *= -0.5
    pdf = np.exp(pdf, out=pdf)                        # times 1/sqrt(2 pi), folded in below
    base = np.where(live, weight * eq / _SQRT_2PI, 0.0)
    cpdf = np.stack([base * np.where(live, inv_v, 0.0),          # gamma (x 1/S)
                     base * sqt,                                   # vega (x S)
                     -0.5 * base * sigma / np.where(live, sqt, 1.0)], axis=1)  # theta (x S)
    gamma, vega, decay = np.moveaxis(np.matmul(cpdf, pdf), 1, 0)
    value = S * (a1 - put_s) - a2 + put_k
    theta = S * (decay + q * (a1_alive - put_s_alive)) - r * (a2_alive - put_k_alive)
    rho_put = (c2 * tau * put).sum(axis=1)[:, None]
    if black76:
        # rho = -sum tau x leg value (F held fixed): the value sum above, weighted by tau
        put_s_tau = (c1 * tau * put).sum(axis=1)[:, None]
        rho_total = -(S * (a1_tau - put_s_tau) - rho + rho_put)
    else:
        rho_total = rho - rho_put
    return {
        "value": value,
        "delta": a1 - put_s,
        "gamma": gamma * inv_S,
        "theta": theta / DAYS_PER_YEAR,
        "vega": vega * S / 100.0,
        "rho": rho_total / 100.0,
    }


def position_curves(legs: Sequence[Leg], grid, days, spot, r=0.0, q=0.0, valuation_date=None,
                    *, iv=None, greeks=True, model="bsm") -> dict:
    """Position value, P&L and (optionally) Greeks on ``grid`` x ``days`` as ndarrays.

    ``days``: calendar days after the valuation date. Returns ``value``, ``pnl`` and the
    Greeks (position units, see ``GREEK_UNITS``) as (len(days), len(grid)) arrays, plus
    ``net_debit``. Legs past expiry are held at their intrinsic (settlement) value.
    """
    black76 = check_model(model)
    q = r if black76 else q
    book = _book(legs, spot, r, q, valuation_date, iv, black76)
    S = np.asarray(grid, dtype=float)
    days = np.asarray(days, dtype=float)
    return _curves(book, S, days, r, q, greeks)


def _curves(book, S, days, r, q, greeks):
    D, P = days.size, S.size
    if book.strike.size:
        with np.errstate(divide="ignore"):
            logS = np.log(S)
            inv_S = np.where(S > 0, 1.0 / np.where(S > 0, S, 1.0), 0.0)
        tau = book.years[None, :] - days[:, None] / DAYS_PER_YEAR
        out = _option_curves(S, logS, inv_S, book.strike, tau, book.sigma, book.call,
                             book.weight, r, q, greeks, book.black76)
    else:
        zero = np.zeros((D, P))
        out = {"value": zero.copy()}
        if greeks:
            out.update({k: zero.copy() for k in ("delta", "gamma", "theta", "vega", "rho")})
    if book.linear_weight:
        out["value"] = out["value"] + book.linear_weight * S
        if greeks:
            out["delta"] = out["delta"] + book.linear_weight
    out["pnl"] = out["value"] - book.net_debit
    out["net_debit"] = book.net_debit
    return out


def price_grid(legs: Sequence[Leg], spot, valuation_date=None, *, points=1001,
               width_sigmas=3.0, bounds=None, iv=None, _book=None) -> np.ndarray:
    """Evenly spaced prices: ``bounds`` if given, else spot x (1 +- k sigma sqrt(T)).

    sigma is the largest leg iv, T the latest option expiry (at least one day), k =
    ``width_sigmas``; the range is widened to show every strike with 5% to spare and
    never goes below 0.
    """
    if bounds is not None:
        lo, hi = (float(x) for x in bounds)
        if not (0 <= lo < hi):
            raise ValueError(f"bounds: expected 0 <= low < high, got {bounds!r}")
        return np.linspace(lo, hi, int(points))
    strikes = [leg.strike for leg in legs if leg.kind == "option"]
    if _book is not None and _book.strike.size:
        sig, T = float(_book.sigma.max()), float(_book.years.max())
    else:
        vols = [leg.iv for leg in legs if leg.kind == "option" and leg.iv is not None]
        sig = max(vols) if vols else (iv if iv is not None else 0.3)
        years = [leg.years_to_expiry(valuation_date) for leg in legs if leg.kind == "option"]
        T = max(years) if years else 30 / DAYS_PER_YEAR
    half = width_sigmas * max(sig, 0.05) * math.sqrt(max(T, 1 / DAYS_PER_YEAR))
    lo, hi = spot * (1 - half), spot * (1 + half)
    if strikes:
        lo, hi = min(lo, min(strikes) * 0.95), max(hi, max(strikes) * 1.05)
    return np.linspace(max(lo, 0.0), hi, int(points))
