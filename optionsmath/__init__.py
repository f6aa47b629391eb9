"""optionsmath — the options maths every tradeloop plugin uses, in one place.

A pure package: numpy and scipy (and, for market time, exchange-calendars, imported only
when a calendar is first needed). It imports nothing of ours — no Flask, no SQL, no app,
bus or plugin — so it can be tested alone and reused. ``import optionsmath`` is cheap: the
names below are loaded from their submodule on first use.

One unit convention (docs/risk-math.md has the formulas and sources)
---------------------------------------------------------------------
* time ``T``: years, **calendar time / 365** (``T = days / 365`` for whole days, or
  ``seconds / (365 x 86,400)`` to a settlement moment, see ``year_fraction``);
* rates ``r``, dividend yield ``q``, volatility ``sigma``/``iv``: continuously compounded
  annual decimals (0.043, 0.20);
* per unit of the underlying (one share, one option on one share): ``price``;
  ``delta`` per 1.00 move of the underlying; ``gamma`` change of delta per 1.00 move;
  ``theta`` per **calendar day** (annual dV/dt / 365); ``vega`` per **vol point**
  (dV/dsigma / 100); ``rho`` per **1 % of r** (dV/dr / 100, q held fixed; Black-76: F held
  fixed, so rho = -T x V / 100). ``GREEK_UNITS`` has the same text for APIs.
* positions: figures x signed ``quantity`` (+ long, - short) x ``multiplier`` (100 for
  equity/index options); ``net_debit`` = sum(premium x quantity x multiplier) (negative: a
  credit); P&L = value - net_debit; **max_loss is a P&L: the lowest one, negative for a
  loss**; ``None`` + an ``*_unbounded`` flag when unbounded.
* money is ``Decimal`` at the edges (``to_decimal``, ``quantize``); the array maths is float.

Public names (module in brackets) and their contracts
------------------------------------------------------
Pricing [bsm]
  bsm_greeks(S, K, T, r, q, sigma, right) -> {price, delta, gamma, theta, vega, rho}: ndarrays,
      broadcasting every argument; T = 0 -> intrinsic; sigma = 0 -> discounted forward intrinsic.
  bsm_price(S, K, T, r, q, sigma, right) -> ndarray: the ``price`` of ``bsm_greeks``.
  black76_greeks(F, K, T, r, sigma, right) -> same keys; options on a future/forward F
      (= BSM with q = r except rho = -T x V / 100).
  black76_price(F, K, T, r, sigma, right) -> ndarray.
  implied_volatility(price, S, K, T, r, q, right, *, on_error="raise") -> float | ndarray.
  norm_cdf(x) -> ndarray: the standard normal CDF; the only one the repo prices with.
  lognormal_cdf(x, spot, drift, sigma, T) -> P(S_T <= x) under GBM (a step at T = 0).
  DAYS_PER_YEAR (365.0), GREEK_UNITS, ImpliedVolatilityError.
Legs [legs]
  Leg(kind, right, strike, expiry_years, quantity, premium, iv, multiplier, expiry): one line.
  leg_from_dict(row, valuation_date=None) -> Leg; legs_from_dicts(rows, ...) -> list[Leg].
  InvalidLeg (a ValueError whose message starts with the field name).
Payoff at expiry [payoff] — exact, any number type (Decimal in -> Decimal out) or arrays
  intrinsic(right, strike, price) -> the option's value at expiry per unit.
  expiry_payoff(strikes, calls, weights, prices, linear_weight=0) -> ndarray: value of the
      legs at expiry for each price (vectorised; weights = quantity x multiplier).
  payoff_extremes(legs, net_debit) -> (max_profit, max_loss) of a single-expiry set of legs
      as P&L (max_loss negative for a loss), None when unbounded (or, for several expiries,
      not decidable without a model: use ``analyze``).
  payoff_breakevens(legs, net_debit) -> sorted prices where the expiry P&L crosses 0.
  (legs here are mappings or objects with instrument_type/kind, right, strike, quantity,
  multiplier, expiry.)
Strategy names [strategies]
  classify_strategy(legs) -> "single" | "vertical" | "straddle" | "strangle" | "calendar" |
      "diagonal" | "butterfly" | "condor" | "iron_butterfly" | "iron_condor" | "stock" |
      "covered_call" | "protective_put" | "custom".
Position analysis [analysis, curves, expiry]
  analyze(legs, spot, r, q, valuation_date, ...) -> JSON-ready dict (curves, Greeks,
      breakevens, max profit/loss, profit ranges, POP); analyze_many(leg_sets, ...) overlays
      several on one grid; expiry_profile(...); position_curves(...) -> ndarrays;
      price_grid(...); scenario_pnl(...).
Market time [markettime] — exchange calendars (exchange-calendars), UTC datetimes
  calendar_name(underlying) -> exchange-calendars code; every US equity, ETF and index
      underlying -> "XNYS" (unknown ones too); CALENDARS maps the exceptions.
  settlement_style(underlying, expiry) -> "AM" | "PM". AM: the monthly (third-Friday) expiry
      of SPX, NDX, RUT, DJX, VIX-style roots (VIX: every expiry); PM: everything else —
      SPXW/NDXP/RUTW/XSP weeklies and dailies, equities, ETFs, unknown underlyings.
  settlement_moment(underlying, expiry, *, style=None, calendar=None) -> aware UTC datetime:
      AM -> the opening of the expiry day's session (last trade: the previous session's
      close); PM -> that day's close (early closes included). An expiry that is not a
      session moves to the previous session.
  last_trade_moment(underlying, expiry, *, style=None, calendar=None) -> aware UTC datetime.
  is_trading_day(day, underlying=None, *, calendar=None) -> bool.
  previous_trading_day(day, ...) / next_trading_day(day, ...) -> date (strictly before/after).
  year_fraction(valuation_time, settlement_moment) -> float years: seconds / (365 x 86,400),
      >= 0 (a settled option has T = 0); both aware datetimes.
  years_to_settlement(valuation_time, underlying, expiry, *, style=None) -> float.
  is_monthly_expiry(expiry, underlying=None) -> bool (third Friday, or the session before a
      holiday third Friday); underlying_root("I:SPX") -> "SPX"; get_calendar(name).
  default_underlying(symbol) -> the underlying when none is given: "SPX"/"SPXW" -> "I:SPX",
      "NDXP" -> "I:NDX" (INDEX_OF_OPTION_ROOT), "AAPL" -> "AAPL".
Decimals [decimals]
  ZERO, CENT; to_decimal(x) (floats through their shortest repr; NaN/inf -> ValueError);
  to_decimal_or_none(x) (None/NaN -> None); quantize(x, places=2, rounding=ROUND_HALF_EVEN);
  cents(x) = quantize(x, 2).
"""
from __future__ import annotations

import importlib

_WHERE = {
    # bsm
    "DAYS_PER_YEAR": "bsm", "GREEK_UNITS": "bsm", "ImpliedVolatilityError": "bsm",
    "bsm_greeks": "bsm", "bsm_price": "bsm", "black76_greeks": "bsm", "black76_price": "bsm",
    "implied_volatility": "bsm", "norm_cdf": "bsm", "lognormal_cdf": "bsm",
    # legs
    "InvalidLeg": "legs", "Leg": "legs", "leg_from_dict": "legs", "legs_from_dicts": "legs",
    # payoff
    "intrinsic": "payoff", "expiry_payoff": "payoff", "payoff_extremes": "payoff",
    "payoff_breakevens": "payoff",
    # strategies
    "classify_strategy": "strategies",
    # position analysis
    "position_curves": "curves",
    "expiry_profile": "expiry",
    "analyze": "analysis", "analyze_many": "analysis", "price_grid": "analysis",
    "scenario_pnl": "analysis",
    # market time
    "CALENDARS": "markettime", "calendar_name": "markettime", "settlement_style": "markettime",
    "settlement_moment": "markettime", "last_trade_moment": "markettime",
    "is_trading_day": "markettime", "previous_trading_day": "markettime",
    "next_trading_day": "markettime", "year_fraction": "markettime",
    "years_to_settlement": "markettime", "is_monthly_expiry": "markettime",
    "underlying_root": "markettime", "get_calendar": "markettime",
    "default_underlying": "markettime", "INDEX_OF_OPTION_ROOT": "markettime",
    # decimals
    "ZERO": "decimals", "CENT": "decimals", "to_decimal": "decimals",
    "to_decimal_or_none": "decimals", "quantize": "decimals", "cents": "decimals",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'optionsmath' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"optionsmath.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
