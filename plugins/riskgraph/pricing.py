"""Risk engine for the riskgraph plugin: prices, Greeks and P&L of any set of legs.

Owns the maths only (numpy/scipy, no Flask, no database): European Black-Scholes-Merton
with a continuous dividend yield, vectorised over a price grid x a list of dates; exact
expiry analysis (breakevens, max profit/loss, probability of profit); what-if scenarios;
an implied-volatility solver. Everything a caller gets back from ``analyze`` is a plain,
JSON-ready dict. The conventions (units, day count) are in ``GREEK_UNITS`` and
docs/risk-math.md.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np


def ndtr(x, out=None):
    """scipy's standard normal CDF, imported on first use (scipy is slow to import and
    ``tradeloop --help`` must not pay for it)."""
    from scipy.special import ndtr as _ndtr
    return _ndtr(x) if out is None else _ndtr(x, out=out)

__all__ = [
    "DAYS_PER_YEAR",
    "GREEK_UNITS",
    "ImpliedVolatilityError",
    "InvalidLeg",
    "Leg",
    "analyze",
    "analyze_many",
    "bsm_greeks",
    "bsm_price",
    "expiry_profile",
    "implied_volatility",
    "leg_from_dict",
    "legs_from_dicts",
    "position_curves",
    "price_grid",
    "scenario_pnl",
]

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


class InvalidLeg(ValueError):
    """A leg (or a dict describing one) is malformed; the message names the field."""


class ImpliedVolatilityError(ValueError):
    """No volatility reproduces the given price (it lies outside the no-arbitrage bounds)."""


# ---------------------------------------------------------------------------------------------
# Legs
# ---------------------------------------------------------------------------------------------

_KINDS = ("option", "stock", "future")


def _norm_right(right):
    if right is None:
        return None
    text = str(right).strip().lower()
    if text in ("c", "call", "calls"):
        return "call"
    if text in ("p", "put", "puts"):
        return "put"
    raise InvalidLeg(f"right: expected 'call' or 'put', got {right!r}")


def _as_date(value, field):
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidLeg(f"{field}: expected an ISO date (YYYY-MM-DD), got {value!r}") from None


@dataclass(frozen=True)
class Leg:
    """One line of a position.

    ``quantity`` is signed (+ long, - short) and counts contracts (or shares);
    ``premium`` is the price paid/received per unit of the underlying, always >= 0, used
    for the P&L (``None``: cost basis taken at the current theoretical value);
    ``iv`` is a decimal (0.2 = 20%); the expiry is either a date (``expiry``, resolved
    against the valuation date) or ``expiry_years`` from the valuation date.
    Stocks and futures are linear in the underlying price (for options on futures, the
    grid price is the future's price; use q = r to get Black-76).
    """

    kind: str
    right: str | None = None
    strike: float | None = None
    expiry_years: float | None = None
    quantity: int = 1
    premium: float | None = None
    iv: float | None = None
    multiplier: int = 100
    expiry: dt.date | None = None

    def __post_init__(self):
        kind = str(self.kind).strip().lower()
        if kind not in _KINDS:
            raise InvalidLeg(f"kind: expected one of {_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "kind", kind)
        if isinstance(self.quantity, bool) or int(self.quantity) != self.quantity:
            raise InvalidLeg(f"quantity: expected a signed integer, got {self.quantity!r}")
        object.__setattr__(self, "quantity", int(self.quantity))
        if int(self.multiplier) != self.multiplier or self.multiplier <= 0:
            raise InvalidLeg(f"multiplier: expected a positive integer, got {self.multiplier!r}")
        object.__setattr__(self, "multiplier", int(self.multiplier))
        if self.premium is not None:
            if not math.isfinite(self.premium) or self.premium < 0:
                raise InvalidLeg(f"premium: expected a finite price >= 0, got {self.premium!r}")
            object.__setattr__(self, "premium", float(self.premium))
        if self.iv is not None:
            if not math.isfinite(self.iv) or self.iv < 0:
                raise InvalidLeg(f"iv: expected a decimal volatility >= 0, got {self.iv!r}")
            object.__setattr__(self, "iv", float(self.iv))
        object.__setattr__(self, "expiry", _as_date(self.expiry, "expiry"))
        if kind != "option":
            if self.strike is not None:
                raise InvalidLeg(f"strike: a {kind} leg has no strike")
            object.__setattr__(self, "right", None)
            return
        object.__setattr__(self, "right", _norm_right(self.right))
        if self.right is None:
            raise InvalidLeg("right: an option leg needs 'call' or 'put'")
        if self.strike is None or not math.isfinite(self.strike) or self.strike <= 0:
            raise InvalidLeg(f"strike: expected a positive number, got {self.strike!r}")
        object.__setattr__(self, "strike", float(self.strike))
        if self.expiry is None and self.expiry_years is None:
            raise InvalidLeg("expiry: an option leg needs an expiry date or expiry_years")
        if self.expiry_years is not None:
            if not math.isfinite(self.expiry_years):
                raise InvalidLeg(f"expiry_years: expected a number, got {self.expiry_years!r}")
            object.__setattr__(self, "expiry_years", float(self.expiry_years))

    def years_to_expiry(self, valuation_date=None):
        """Years (calendar days / 365) from ``valuation_date`` to expiry, >= 0; None if linear."""
        if self.kind != "option":
            return None
        if self.expiry is not None and valuation_date is not None:
            days = (self.expiry - _as_date(valuation_date, "valuation_date")).days
            return max(days, 0) / DAYS_PER_YEAR
        if self.expiry_years is not None:
            return max(self.expiry_years, 0.0)
        raise InvalidLeg("valuation_date: needed to turn the leg's expiry date into years")


def leg_from_dict(row: Mapping, valuation_date=None) -> Leg:
    """Build a ``Leg`` from a plain dict as the API/trade log sends it.

    Keys (aliases in brackets): ``instrument_type`` [kind], ``right`` [option_right],
    ``strike``, ``expiry`` [expiration, expiry_date] (ISO date) or ``expiry_years``,
    ``quantity`` (signed), ``price`` [premium] per unit, ``iv``, ``multiplier`` (default 100
    for options, 1 for stocks and futures). With a ``valuation_date`` the leg also gets
    ``expiry_years`` filled in.
    """
    if not isinstance(row, Mapping):
        raise InvalidLeg(f"leg: expected an object, got {type(row).__name__}")

    def pick(*names):
        for name in names:
            if row.get(name) is not None:
                return row[name]
        return None

    kind = pick("instrument_type", "kind")
    if kind is None:
        raise InvalidLeg("instrument_type: required")
    kind = str(kind).strip().lower()
    multiplier = pick("multiplier")
    if multiplier is None:
        multiplier = 100 if kind == "option" else 1
    quantity = pick("quantity", "qty")
    if quantity is None:
        raise InvalidLeg("quantity: required (signed: + long, - short)")

    def number(name, value):
        if value is None:
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidLeg(f"{name}: expected a number, got {value!r}") from None

    expiry = _as_date(pick("expiry", "expiration", "expiry_date"), "expiry")
    expiry_years = number("expiry_years", pick("expiry_years"))
    if expiry is not None and valuation_date is not None and kind == "option":
        days = (expiry - _as_date(valuation_date, "valuation_date")).days
        if days < 0:
            raise InvalidLeg(f"expiry: {expiry.isoformat()} is before the valuation date")
        expiry_years = days / DAYS_PER_YEAR
    try:
        qty = float(quantity)
    except (TypeError, ValueError):
        raise InvalidLeg(f"quantity: expected a signed integer, got {quantity!r}") from None
    if not qty.is_integer():
        raise InvalidLeg(f"quantity: expected a signed integer, got {quantity!r}")
    mult = number("multiplier", multiplier)
    if mult is None or not mult.is_integer():
        raise InvalidLeg(f"multiplier: expected a positive integer, got {multiplier!r}")
    return Leg(
        kind=kind,
        right=pick("right", "option_right") if kind == "option" else None,
        strike=number("strike", pick("strike")) if kind == "option" else None,
        expiry_years=expiry_years if kind == "option" else None,
        quantity=int(qty),
        premium=number("price", pick("price", "premium")),
        iv=number("iv", pick("iv", "implied_volatility")),
        multiplier=int(mult),
        expiry=expiry if kind == "option" else None,
    )


def legs_from_dicts(rows: Iterable[Mapping], valuation_date=None) -> list[Leg]:
    """``leg_from_dict`` over a list; errors name the leg's index (``legs[2].strike: ...``)."""
    legs = []
    for i, row in enumerate(rows):
        try:
            legs.append(leg_from_dict(row, valuation_date))
        except InvalidLeg as exc:
            raise InvalidLeg(f"legs[{i}].{exc}") from None
    return legs


# ---------------------------------------------------------------------------------------------
# Black-Scholes-Merton, element-wise with broadcasting
# ---------------------------------------------------------------------------------------------

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
            f"S={float(S[i])} K={float(K[i])} T={float(T[i])} (T must be > 0)"
            + (f" ({int(bad.sum())} of {bad.size} prices)" if bad.size > 1 else ""))
    out = out.reshape(shape)
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------------
# Position evaluation on a grid x dates (the fast path)
# ---------------------------------------------------------------------------------------------

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


def _book(legs: Sequence[Leg], spot, r, q, valuation_date, iv=None) -> _Book:
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
                 leg_iv, leg_years)


# Dates are evaluated in blocks of at most this many (date, leg, price) points so that the
# few temporaries stay small and are reused by the allocator: on the benchmark (4 legs x
# 10 dates x 1,001 prices) one 40k-point pass was ~1.6x slower, the time going to page
# faults on freshly mapped buffers; blocks of 8k-25k points were the fastest.
_BLOCK_POINTS = 24576


def _option_curves(S, logS, inv_S, strike, tau, sigma, call, weight, r, q, greeks):
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
                             call, weight, r, q, greeks)
        for name in names:
            out[name][start:start + per_block] = part[name]
    return out


def _option_block(S, logS, inv_S, strike, tau, sigma, call, weight, r, q, greeks):
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
    a1, a1_alive = np.moveaxis(np.matmul(np.stack([c1, c1 * alive], axis=1), n1), 1, 0)
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
    return {
        "value": value,
        "delta": a1 - put_s,
        "gamma": gamma * inv_S,
        "theta": theta / DAYS_PER_YEAR,
        "vega": vega * S / 100.0,
        "rho": (rho - rho_put) / 100.0,
    }


def position_curves(legs: Sequence[Leg], grid, days, spot, r=0.0, q=0.0, valuation_date=None,
                    *, iv=None, greeks=True) -> dict:
    """Position value, P&L and (optionally) Greeks on ``grid`` x ``days`` as ndarrays.

    ``days``: calendar days after the valuation date. Returns ``value``, ``pnl`` and the
    Greeks (position units, see ``GREEK_UNITS``) as (len(days), len(grid)) arrays, plus
    ``net_debit``. Legs past expiry are held at their intrinsic (settlement) value.
    """
    book = _book(legs, spot, r, q, valuation_date, iv)
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
                             book.weight, r, q, greeks)
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


# ---------------------------------------------------------------------------------------------
# Expiry analysis: exact breakevens, max profit/loss and probability of profit
# ---------------------------------------------------------------------------------------------

def _expiry_pnl(book, x):
    """Exact P&L at the (common) expiry at prices x: intrinsic values minus net debit."""
    x = np.asarray(x, dtype=float)
    diff = x[..., None] - book.strike
    intrinsic = np.where(book.call, np.maximum(diff, 0.0), np.maximum(-diff, 0.0))
    return intrinsic @ book.weight + book.linear_weight * x - book.net_debit


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


def _lognormal_cdf(x, spot, drift, sigma, T):
    """P(S_T <= x) for S_T = spot * exp((drift - sigma^2/2) T + sigma sqrt(T) Z)."""
    x = np.asarray(x, dtype=float)
    if T <= 0 or sigma <= 0:
        forward = spot * math.exp(drift * max(T, 0.0))
        return (x >= forward).astype(float)
    with np.errstate(divide="ignore"):
        z = (np.log(x / spot) - (drift - 0.5 * sigma * sigma) * T) / (sigma * math.sqrt(T))
    return ndtr(z)


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
        pop = float(np.sum(_lognormal_cdf(hi, spot, drift, pop_iv, T)
                           - _lognormal_cdf(lo, spot, drift, pop_iv, T)))
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


# ---------------------------------------------------------------------------------------------
# Grid, top-level analysis, scenarios
# ---------------------------------------------------------------------------------------------

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


def _date_offsets(dates, valuation_date):
    days = []
    for d in dates:
        if isinstance(d, (dt.date, str)) and not isinstance(d, (int, float)):
            if valuation_date is None:
                raise ValueError("dates: calendar dates need a valuation_date")
            days.append((_as_date(d, "dates") - _as_date(valuation_date, "valuation_date")).days)
        else:
            days.append(float(d))
    return np.array(days, dtype=float)


def _greeks_at_spot(book, spot, r, q):
    """Per-leg Greeks at the spot (per unit and x quantity x multiplier) and the total."""
    names = ("delta", "gamma", "theta", "vega", "rho")
    total = dict.fromkeys(names, 0.0)
    total["value"] = 0.0
    rows = []
    g = None
    if book.strike.size:
        g = bsm_greeks(spot, book.strike, book.years, r, q, book.sigma, book.call)
    j = 0
    for i, leg in enumerate(book.legs):
        w = leg.quantity * leg.multiplier
        if leg.kind == "option":
            unit = {k: float(g[k][j]) for k in ("price",) + names}
            j += 1
        else:
            unit = {"price": float(spot), "delta": 1.0, "gamma": 0.0, "theta": 0.0,
                    "vega": 0.0, "rho": 0.0}
        position = {k: unit[k] * w for k in names}
        position["value"] = unit["price"] * w
        for k in total:
            total[k] += position[k]
        rows.append({
            "index": i, "kind": leg.kind, "right": leg.right, "strike": leg.strike,
            "quantity": leg.quantity, "multiplier": leg.multiplier,
            "expiry": leg.expiry.isoformat() if leg.expiry else None,
            "years": book.leg_years[i], "iv": book.leg_iv[i],
            "per_unit": unit, "position": position,
        })
    return {"legs": rows, "total": total}


# value = pnl + net_debit, so only the P&L is sent
_CURVE_KEYS = ("pnl", "delta", "gamma", "theta", "vega", "rho")


def _analysis(book, S, days, spot, r, q, valuation_date, greek_curves, pop_iv, drift):
    curves = _curves(book, S, days, r, q, greek_curves)
    exp = _expiry(book, spot, r, q, pop_iv, drift, S)
    T = exp.pop("years")
    exp_curve = exp.pop("_curve")
    if exp_curve is None:
        exp_curve = _expiry_pnl(book, S)
    tol = 1e-9 * max(1.0, abs(book.net_debit))
    vdate = _as_date(valuation_date, "valuation_date") if valuation_date is not None else None
    lists = {key: curves[key].tolist() for key in _CURVE_KEYS if key in curves}
    breakevens = _grid_roots(S, curves["pnl"], tol)
    per_date = []
    for i, n in enumerate(days.tolist()):
        row = {"days": n,
               "date": (vdate + dt.timedelta(days=n)).isoformat() if vdate else None}
        for key, rows in lists.items():
            row[key] = rows[i]
        row["breakevens"] = breakevens[i]
        per_date.append(row)
    exp_days = T * DAYS_PER_YEAR
    result = {
        "net_debit": book.net_debit,
        "curves": per_date,
        "expiry": {"days": exp_days,
                   "date": (vdate + dt.timedelta(days=round(exp_days))).isoformat()
                   if vdate else None,
                   "years": T, "pnl": exp_curve.tolist(), "exact": exp.pop("exact")},
        "greeks": _greeks_at_spot(book, spot, r, q),
    }
    result.update(exp)
    return result


def analyze_many(leg_sets: Sequence[Sequence[Leg]], spot, r=0.0, q=0.0, valuation_date=None,
                 *, grid=None, dates=(0,), points=1001, width_sigmas=3.0, bounds=None,
                 iv=None, pop_iv=None, drift=None, greek_curves=False) -> dict:
    """``analyze`` for several strategies overlaid on one price grid.

    The grid (unless given) spans every strategy's legs. Returns ``{"spot", "r", "q",
    "valuation_date", "grid", "units", "strategies": [analysis, ...]}`` where each analysis
    is what ``analyze`` returns minus the shared keys.
    """
    books = [_book(legs, spot, r, q, valuation_date, iv) for legs in leg_sets]
    if grid is None:
        every = [leg for legs in leg_sets for leg in legs]
        sigmas = np.concatenate([b.sigma for b in books]) if books else np.array([])
        years = np.concatenate([b.years for b in books]) if books else np.array([])
        union = _Book(every, np.array([leg.strike for leg in every if leg.kind == "option"],
                                      float), years, sigmas, np.array([], bool),
                      np.array([]), 0.0, 0.0, [], [], [])
        S = price_grid(every, spot, valuation_date, points=points, width_sigmas=width_sigmas,
                       bounds=bounds, iv=iv, _book=union if sigmas.size else None)
    else:
        S = np.asarray(grid, dtype=float)
        if S.ndim != 1 or S.size < 2 or np.any(S < 0) or np.any(np.diff(S) <= 0):
            raise ValueError("grid: expected increasing prices >= 0 (at least two)")
    days = _date_offsets(dates, valuation_date)
    return {
        "spot": float(spot), "r": float(r), "q": float(q),
        "valuation_date": _as_date(valuation_date, "valuation_date").isoformat()
        if valuation_date is not None else None,
        "grid": S.tolist(),
        "units": dict(GREEK_UNITS),
        "strategies": [_analysis(b, S, days, spot, r, q, valuation_date, greek_curves,
                                 pop_iv, drift) for b in books],
    }


def analyze(legs: Sequence[Leg], spot, r=0.0, q=0.0, valuation_date=None, *, grid=None,
            dates=(0,), points=1001, width_sigmas=3.0, bounds=None, iv=None, pop_iv=None,
            drift=None, greek_curves=False) -> dict:
    """Full risk picture of one position as a JSON-ready dict.

    ``dates``: calendar days after ``valuation_date`` (or dates) to draw T+n curves for;
    ``grid``: explicit prices, else ``points`` prices from ``price_grid``; ``iv``: vol for
    legs without one (otherwise implied from the leg's premium); ``pop_iv``/``drift``: see
    ``expiry_profile``.

    ``greek_curves``: also send the position Greeks along the grid for every date.

    Keys: spot, r, q, valuation_date, grid, units (``GREEK_UNITS``), net_debit,
    curves (per date: days, date, pnl, breakevens, and with ``greek_curves`` delta, gamma,
    theta, vega, rho; position value = pnl + net_debit),
    expiry (days, date, years, pnl, exact), greeks (legs: per_unit/position; total),
    breakevens, max_profit, max_profit_unbounded, max_loss, max_loss_unbounded,
    profit_ranges, pop, pop_iv, pop_drift.
    """
    out = analyze_many([legs], spot, r, q, valuation_date, grid=grid, dates=dates,
                       points=points, width_sigmas=width_sigmas, bounds=bounds, iv=iv,
                       pop_iv=pop_iv, drift=drift, greek_curves=greek_curves)
    result = out.pop("strategies")[0]
    out.update(result)
    return out


def scenario_pnl(legs: Sequence[Leg], spot, r=0.0, q=0.0, valuation_date=None, *,
                 iv_shifts=(0.0,), days_forward=(0,), price_moves=(0.0,),
                 move_unit="percent", ref_iv=None, sigma_days=None, iv=None) -> dict:
    """P&L for every combination of IV shift x days forward x price move.

    ``iv_shifts`` in vol points (+5 = every leg's iv + 0.05, floored at 0);
    ``days_forward`` in calendar days; ``price_moves`` in percent of spot
    (``move_unit="percent"``, 5 = +5%) or in sigmas (``"sigma"``), where
    sigma = ref_iv x spot x sqrt(days / 365) with days = ``sigma_days`` or else the
    scenario's days forward (one day when that is 0) and ref_iv defaulting to the iv of the
    option leg nearest the spot. Prices are floored at 0.

    Returns a dict with the axes, ``prices[d][m]`` and ``pnl[i][d][m]`` (nested lists).
    """
    if move_unit not in ("percent", "sigma"):
        raise ValueError(f"move_unit: expected 'percent' or 'sigma', got {move_unit!r}")
    book = _book(legs, spot, r, q, valuation_date, iv)
    shifts = np.asarray(iv_shifts, dtype=float) / 100.0
    days = np.asarray(days_forward, dtype=float)
    moves = np.asarray(price_moves, dtype=float)
    if move_unit == "percent":
        prices = np.broadcast_to(spot * (1.0 + moves / 100.0), (days.size, moves.size))
    else:
        if ref_iv is None:
            ref_iv = (float(book.sigma[np.argmin(np.abs(book.strike - spot))])
                      if book.strike.size else 0.0)
        horizon = np.full(days.size, float(sigma_days)) if sigma_days is not None \
            else np.where(days > 0, days, 1.0)
        sigma_abs = ref_iv * spot * np.sqrt(horizon / DAYS_PER_YEAR)
        prices = spot + moves[None, :] * sigma_abs[:, None]
    prices = np.maximum(prices, 0.0)
    value = book.linear_weight * prices[None, :, :]                  # (1, D, M)
    if book.strike.size:
        sig = np.maximum(book.sigma[None, :] + shifts[:, None], 0.0)  # (I, L)
        tau = np.maximum(book.years[None, :] - days[:, None] / DAYS_PER_YEAR, 0.0)  # (D, L)
        unit = bsm_price(prices[None, :, :, None], book.strike, tau[None, :, None, :], r, q,
                         sig[:, None, None, :], book.call)           # (I, D, M, L)
        value = value + unit @ book.weight
    pnl = np.broadcast_to(value - book.net_debit, (shifts.size, days.size, moves.size))
    return {
        "iv_shifts": np.asarray(iv_shifts, dtype=float).tolist(),
        "days_forward": days.tolist(),
        "price_moves": moves.tolist(),
        "move_unit": move_unit,
        "ref_iv": None if move_unit == "percent" else float(ref_iv),
        "prices": np.asarray(prices).tolist(),
        "pnl": pnl.tolist(),
        "net_debit": book.net_debit,
    }
