"""optionsmath's Black-Scholes-Merton and Black-76 against QuantLib, an independent library.

QuantLib's ``AnalyticEuropeanEngine`` on a ``BlackScholesMertonProcess`` with flat curves and an
Actual/365 (Fixed) day count, so that T = whole days / 365 exactly as ours. Unit conversions
(QuantLib -> ours): theta per year -> ``thetaPerDay()`` (/365, per calendar day, as ours);
vega per 1.00 of sigma -> /100 (per vol point); rho per 1.00 of r -> /100 (per 1 % of r).
Black-76 against ``QuantLib.blackFormula`` (price) and its own closed form for rho.
"""
import math

import numpy as np
import QuantLib as ql
import pytest

import optionsmath as om

TODAY = ql.Date(7, 1, 2025)


def quantlib_bsm(right, S, K, days, r, q, sigma):
    ql.Settings.instance().evaluationDate = TODAY
    dc = ql.Actual365Fixed()
    spot = ql.QuoteHandle(ql.SimpleQuote(S))
    rate = ql.YieldTermStructureHandle(ql.FlatForward(TODAY, r, dc))
    div = ql.YieldTermStructureHandle(ql.FlatForward(TODAY, q, dc))
    vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), sigma, dc))
    process = ql.BlackScholesMertonProcess(spot, div, rate, vol)
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if right == "call" else ql.Option.Put, K)
    option = ql.EuropeanOption(payoff, ql.EuropeanExercise(TODAY + days))
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return {"price": option.NPV(), "delta": option.delta(), "gamma": option.gamma(),
            "theta": option.thetaPerDay(), "vega": option.vega() / 100.0, "rho": option.rho() / 100.0}


def random_cases(n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        S = float(rng.uniform(20, 6000))
        yield ("call" if rng.random() < 0.5 else "put", S, float(S * rng.uniform(0.6, 1.4)),
               int(rng.integers(1, 3 * 365)), float(rng.uniform(-0.01, 0.08)),
               float(rng.uniform(0.0, 0.05)), float(rng.uniform(0.05, 1.2)))


CASES = list(random_cases(200, seed=20250107))


def test_bsm_price_and_greeks_agree_with_quantlib_to_1e7():
    """200 random options (spot 20..6000, moneyness 0.6..1.4, 1 day..3 years, r -1 %..8 %,
    q 0..5 %, vol 5..120 %): every price and Greek within 1e-7 (relative to the spot for
    scale-free comparison of prices up to 6,000: |ours - QL| <= 1e-7 x max(1, |QL|))."""
    rights = [c[0] for c in CASES]
    S, K, days, r, q, sigma = (np.array([c[i] for c in CASES], dtype=float) for i in range(1, 7))
    ours = om.bsm_greeks(S, K, days / 365.0, r, q, sigma, rights)
    for i, case in enumerate(CASES):
        want = quantlib_bsm(case[0], case[1], case[2], case[3], case[4], case[5], case[6])
        for name, value in want.items():
            got = float(ours[name][i])
            assert abs(got - value) <= 1e-7 * max(1.0, abs(value)), (case, name, got, value)


@pytest.mark.parametrize("right", ["call", "put"])
def test_black76_price_against_quantlib_and_rho_is_minus_t_times_value(right):
    """Black-76 on a future F = 5000, K = 5100, 90 days, r = 4 %, sigma = 22 %.
    Price: QuantLib's blackFormula(type, K, F, sigma sqrt T, e^(-rT)). Rho (F held fixed):
    d/dr [e^(-rT) B] = -T e^(-rT) B, per 1 % of r: -T x V / 100, checked against a central
    difference of QuantLib's price in r (h = 1e-6)."""
    F, K, T, r, sigma = 5000.0, 5100.0, 90 / 365, 0.04, 0.22
    kind = ql.Option.Call if right == "call" else ql.Option.Put

    def ql_price(rate):
        return ql.blackFormula(kind, K, F, sigma * math.sqrt(T), math.exp(-rate * T))

    got = om.black76_greeks(F, K, T, r, sigma, right)
    assert float(got["price"]) == pytest.approx(ql_price(r), abs=1e-8)
    h = 1e-6
    rho_fd = (ql_price(r + h) - ql_price(r - h)) / (2 * h) / 100.0
    assert float(got["rho"]) == pytest.approx(rho_fd, abs=1e-6)
    assert float(got["rho"]) == pytest.approx(-T * ql_price(r) / 100.0, abs=1e-9)
    # delta w.r.t. F: e^(-rT) N(d1) for a call (finite difference of QuantLib's price in F)
    dF = 1e-3
    delta_fd = (ql.blackFormula(kind, K, F + dF, sigma * math.sqrt(T), math.exp(-r * T))
                - ql.blackFormula(kind, K, F - dF, sigma * math.sqrt(T), math.exp(-r * T))) / (2 * dF)
    assert float(got["delta"]) == pytest.approx(delta_fd, abs=1e-6)
