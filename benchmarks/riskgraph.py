"""Benchmark of the riskgraph risk engine: one iron condor, 1,001 prices x 10 dates.

Run as ``python -m benchmarks.riskgraph``. Times (median of a bounded number of runs):
  * ``analyze``: the JSON-ready analysis as the plugin gets it by default (P&L curve and
    its breakevens per date, expiry breakevens, max P&L, POP, Greeks per leg and total);
  * ``analyze(greek_curves=True)``: the same plus the five position Greeks along the grid
    for every date (5 x 10 x 1,001 more floats to turn into Python lists);
  * the engine's array path alone (``position_curves``: value, P&L and Greeks, ndarrays);
  * a plain numpy evaluation of the same Black-Scholes-Merton price formula on the same
    grid and dates, leg by leg, weighted and summed (prices only, no Greeks);
  * the same plain numpy with the five Greeks too (textbook formulas, leg by leg);
  * the route: what ``POST /api/risk-graph/analyze`` calls minus HTTP (the request's legs
    -> engine legs -> analysis -> the JSON body bytes), default and with Greek curves.
Prints figures only; asserts nothing about timings.
"""
from __future__ import annotations

import datetime as dt
import statistics
import time

import numpy as np
from scipy.special import ndtr

import optionsmath as om
from plugins.riskgraph import risk

SPOT, R, Q = 6100.0, 0.043, 0.013
VALUATION = dt.date(2025, 1, 7)
DAYS = np.linspace(0, 40, 10).round()          # 10 dates, all before the 45-day expiry
ROWS = [
    {"instrument_type": "option", "right": "put", "strike": 5900, "expiry": "2025-02-21",
     "quantity": 1, "price": 18.0, "iv": 0.19},
    {"instrument_type": "option", "right": "put", "strike": 6000, "expiry": "2025-02-21",
     "quantity": -1, "price": 33.5, "iv": 0.165},
    {"instrument_type": "option", "right": "call", "strike": 6200, "expiry": "2025-02-21",
     "quantity": -1, "price": 31.0, "iv": 0.135},
    {"instrument_type": "option", "right": "call", "strike": 6300, "expiry": "2025-02-21",
     "quantity": 1, "price": 11.0, "iv": 0.125},
]
MAX_RUNS = 200
TIME_BUDGET_S = 3.0   # per timed function; stops earlier once MAX_RUNS are done


def plain_numpy_value(S, strikes, years, vols, calls, weights, r, q):
    """Textbook BSM price of each leg on a (dates x prices) grid, weighted and summed."""
    total = np.zeros((years.shape[1], S.size))
    for k, T, sigma, call, w in zip(strikes, years, vols, calls, weights):
        T = T[:, None]
        vol_t = sigma * np.sqrt(T)
        d1 = (np.log(S / k) + (r - q + 0.5 * sigma * sigma) * T) / vol_t
        d2 = d1 - vol_t
        if call:
            price = S * np.exp(-q * T) * ndtr(d1) - k * np.exp(-r * T) * ndtr(d2)
        else:
            price = k * np.exp(-r * T) * ndtr(-d2) - S * np.exp(-q * T) * ndtr(-d1)
        total += w * price
    return total


def plain_numpy_greeks(S, strikes, years, vols, calls, weights, r, q):
    """Textbook BSM price and the five Greeks of each leg on the grid, weighted and summed."""
    out = {k: np.zeros((years.shape[1], S.size)) for k in ("value", "delta", "gamma", "theta", "vega", "rho")}
    for k, T, sigma, call, w in zip(strikes, years, vols, calls, weights):
        T = T[:, None]
        sqt = np.sqrt(T)
        d1 = (np.log(S / k) + (r - q + 0.5 * sigma * sigma) * T) / (sigma * sqt)
        d2 = d1 - sigma * sqt
        eq, er = np.exp(-q * T), np.exp(-r * T)
        pdf = np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi)
        if call:
            n1, n2 = ndtr(d1), ndtr(d2)
            price = S * eq * n1 - k * er * n2
            delta = eq * n1
            theta = -S * eq * pdf * sigma / (2 * sqt) + q * S * eq * n1 - r * k * er * n2
            rho = T * k * er * n2
        else:
            n1, n2 = ndtr(-d1), ndtr(-d2)
            price = k * er * n2 - S * eq * n1
            delta = -eq * n1
            theta = -S * eq * pdf * sigma / (2 * sqt) - q * S * eq * n1 + r * k * er * n2
            rho = -T * k * er * n2
        out["value"] += w * price
        out["delta"] += w * delta
        out["gamma"] += w * eq * pdf / (S * sigma * sqt)
        out["theta"] += w * theta / 365
        out["vega"] += w * S * eq * pdf * sqt / 100
        out["rho"] += w * rho / 100
    return out


def median_times(fns):
    """Median seconds per call of each function, timed round-robin (so that every one sees
    the same machine state) for at most MAX_RUNS rounds or TIME_BUDGET_S seconds."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    started = time.perf_counter()
    rounds = 0
    while rounds < MAX_RUNS and (rounds < 5 or time.perf_counter() - started < TIME_BUDGET_S):
        for fn, bucket in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t0)
        rounds += 1
    return [statistics.median(bucket) for bucket in times], rounds


def main():
    legs = om.legs_from_dicts(ROWS, VALUATION)
    grid = om.price_grid(legs, SPOT, VALUATION, points=1001)
    years = np.array([[leg.years_to_expiry(VALUATION) - d / 365 for d in DAYS] for leg in legs])
    strikes = np.array([leg.strike for leg in legs])
    vols = np.array([leg.iv for leg in legs])
    calls = [leg.right == "call" for leg in legs]
    weights = np.array([leg.quantity * leg.multiplier for leg in legs], dtype=float)

    # Same numbers first: the comparison is only fair if both compute the same curve.
    engine = om.position_curves(legs, grid, DAYS, SPOT, R, Q, VALUATION)
    plain = plain_numpy_value(grid, strikes, years, vols, calls, weights, R, Q)
    max_diff = float(np.max(np.abs(engine["value"] - plain)))

    market = dict(spot=SPOT, r=R, q=Q, valuation_date=VALUATION, points=grid.size, bounds=(grid[0], grid[-1]),
                  days_forward=DAYS.astype(int).tolist(), valuation_time=None, model="bsm")
    meta = [{"source": "legs", "strategy_id": None, "label": None}]

    def route(greek_curves):
        sets = [risk.request_legs(ROWS, VALUATION)]
        return risk.analysis_json(sets, meta, dict(market, greek_curves=greek_curves))

    (t_route, t_route_full, t_analyze, t_full, t_curves, t_plain, t_plain_greeks), runs = median_times([
        lambda: route(False),
        lambda: route(True),
        lambda: om.analyze(legs, SPOT, R, Q, VALUATION, grid=grid, dates=DAYS.tolist()),
        lambda: om.analyze(legs, SPOT, R, Q, VALUATION, grid=grid, dates=DAYS.tolist(), greek_curves=True),
        lambda: om.position_curves(legs, grid, DAYS, SPOT, R, Q, VALUATION),
        lambda: plain_numpy_value(grid, strikes, years, vols, calls, weights, R, Q),
        lambda: plain_numpy_greeks(grid, strikes, years, vols, calls, weights, R, Q),
    ])

    print(f"riskgraph benchmark: iron condor, 4 legs, {grid.size} prices x {DAYS.size} dates")
    print(f"  max |engine value - plain numpy value|: {max_diff:.3e}")
    print(f"  median of {runs} runs each, interleaved")
    rows = [
        ("route: POST /analyze minus HTTP (JSON bytes)", t_route),
        ("route with greek_curves (JSON bytes)", t_route_full),
        ("analyze (P&L curves + Greeks per leg)", t_analyze),
        ("analyze(greek_curves=True)", t_full),
        ("position_curves (ndarrays, P&L + Greeks)", t_curves),
        ("plain numpy BSM (prices only)", t_plain),
        ("plain numpy BSM (price + 5 Greeks)", t_plain_greeks),
    ]
    for label, seconds in rows:
        print(f"  {label:<46} {seconds * 1e3:8.3f} ms")
    for label, seconds in rows[:5]:
        print(f"  ratio {label} / plain numpy price+Greeks: {seconds / t_plain_greeks:5.2f}")
    print(f"  ratio route / plain numpy prices only: {t_route / t_plain:5.2f}")


if __name__ == "__main__":
    main()
