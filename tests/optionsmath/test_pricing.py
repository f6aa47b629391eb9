"""Tests of optionsmath's pricing and position analysis (what riskgraph serves) against
independent references.

References: py_vollib's analytic Black-Scholes-Merton (an independent implementation built
on Jaeckel's LetsBeRational), Hull's textbook numbers, closed forms for option strategies
written out here, and a seeded Monte-Carlo estimate. Nothing is compared with the engine's
own output.
"""
import datetime as dt
import json
import math
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

import optionsmath as P

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # py_vollib now aliases vollib
    from py_vollib.black_scholes_merton import black_scholes_merton as vollib_price
    from py_vollib.black_scholes_merton.greeks import analytical as vollib_greeks
    from py_vollib.black_scholes_merton.implied_volatility import (
        implied_volatility as vollib_iv,
    )

# py_vollib's greeks.analytical units (read from its source/docstrings):
#   theta: annual theta / 365  -> per calendar day, as ours
#   vega:  x 0.01              -> per 1 vol point, as ours
#   rho:   x 0.01              -> per 1% of r, as ours
#   delta, gamma: plain derivatives.
# So the conversion factors from py_vollib to our units are all 1; kept explicit so a change
# in either convention is a one-line fix here rather than a silent mismatch.
VOLLIB_TO_OURS = {"delta": 1.0, "gamma": 1.0, "theta": 1.0, "vega": 1.0, "rho": 1.0}


def ref_price(right, S, K, T, r, q, sigma):
    return vollib_price(right[0], S, K, T, r, sigma, q)


def ref_greek(name, right, S, K, T, r, q, sigma):
    fn = getattr(vollib_greeks, name)
    return fn(right[0], S, K, T, r, sigma, q) * VOLLIB_TO_OURS[name]


def intrinsic(right, S, K):
    S = np.asarray(S, dtype=float)
    return np.maximum(S - K, 0.0) if right == "call" else np.maximum(K - S, 0.0)


def option(right, strike, quantity, premium, iv=0.2, years=0.25, multiplier=100):
    return P.Leg("option", right, strike, years, quantity, premium, iv, multiplier)


# ---------------------------------------------------------------------------------------------
# Black-Scholes-Merton against py_vollib
# ---------------------------------------------------------------------------------------------

CASES = [
    # right, S, K, T, r, q, sigma
    ("call", 100, 100, 0.25, 0.05, 0.00, 0.20),   # ATM
    ("put", 100, 100, 0.25, 0.05, 0.00, 0.20),
    ("call", 100, 80, 0.50, 0.03, 0.02, 0.30),    # ITM call
    ("put", 100, 80, 0.50, 0.03, 0.02, 0.30),     # OTM put
    ("call", 100, 120, 1.00, 0.01, 0.03, 0.25),   # OTM call
    ("put", 100, 120, 1.00, 0.01, 0.03, 0.25),    # ITM put
    ("call", 6100, 6200, 30 / 365, 0.043, 0.013, 0.14),
    ("put", 6100, 5900, 30 / 365, 0.043, 0.013, 0.18),
    ("call", 49, 50, 0.3846, 0.05, 0.00, 0.20),   # Hull's Greeks example
    ("put", 25, 30, 2.00, 0.00, 0.00, 0.60),
    ("call", 250, 245, 7 / 365, 0.05, 0.01, 0.80),
    ("put", 250, 255, 1 / 365, 0.05, 0.01, 0.35),
    ("call", 100, 100, 3.00, 0.08, 0.04, 0.10),
    ("put", 100, 100, 3.00, 0.08, 0.04, 0.10),
]


@pytest.mark.parametrize("right,S,K,T,r,q,sigma", CASES)
def test_price_and_greeks_match_py_vollib(right, S, K, T, r, q, sigma):
    got = P.bsm_greeks(S, K, T, r, q, sigma, right)
    assert float(got["price"]) == pytest.approx(ref_price(right, S, K, T, r, q, sigma), abs=1e-6)
    for name in ("delta", "gamma", "theta", "vega", "rho"):
        want = ref_greek(name, right, S, K, T, r, q, sigma)
        assert float(got[name]) == pytest.approx(want, abs=1e-6), name


def test_vectorised_over_a_table_matches_elementwise_reference():
    rights = [c[0] for c in CASES]
    cols = np.array([c[1:] for c in CASES], dtype=float).T
    S, K, T, r, q, sigma = cols
    got = P.bsm_greeks(S, K, T, r, q, sigma, rights)
    want = [ref_price(*c[:1], *c[1:]) for c in CASES]
    np.testing.assert_allclose(got["price"], want, atol=1e-6, rtol=0)
    want_vega = [ref_greek("vega", c[0], *c[1:]) for c in CASES]
    np.testing.assert_allclose(got["vega"], want_vega, atol=1e-6, rtol=0)


def test_hull_textbook_example():
    # Hull, Options, Futures and Other Derivatives: S=42, K=40, r=10%, sigma=20%, T=0.5.
    assert float(P.bsm_price(42, 40, 0.5, 0.1, 0.0, 0.2, "call")) == pytest.approx(4.76, abs=5e-3)
    assert float(P.bsm_price(42, 40, 0.5, 0.1, 0.0, 0.2, "put")) == pytest.approx(0.81, abs=5e-3)


def test_put_call_parity_on_a_grid():
    S = np.linspace(1, 400, 1001)[None, :]
    T = np.array([1 / 365, 0.1, 0.5, 2.0])[:, None]
    K, r, q, sigma = 150.0, 0.04, 0.02, 0.35
    call = P.bsm_price(S, K, T, r, q, sigma, "call")
    put = P.bsm_price(S, K, T, r, q, sigma, "put")
    np.testing.assert_allclose(call - put, S * np.exp(-q * T) - K * np.exp(-r * T),
                               atol=1e-9, rtol=0)


def test_expiry_values_are_intrinsic():
    S = np.linspace(0, 200, 401)
    for right in ("call", "put"):
        got = P.bsm_greeks(S, 100.0, 0.0, 0.05, 0.02, 0.3, right)
        np.testing.assert_array_equal(got["price"], intrinsic(right, S, 100.0))
        for g in ("gamma", "theta", "vega", "rho"):   # a settled option has no exposure
            np.testing.assert_array_equal(got[g], 0.0)
        itm = S > 100 if right == "call" else S < 100
        np.testing.assert_array_equal(np.abs(got["delta"][itm]), 1.0)
        otm = S < 100 if right == "call" else S > 100
        np.testing.assert_array_equal(got["delta"][otm], 0.0)
        assert got["price"][S == 100] == 0.0
        assert got["delta"][S == 100] == (0.5 if right == "call" else -0.5)


@pytest.mark.parametrize("sigma", [0.0, 1e-12])
def test_zero_volatility_limit_is_discounted_forward_intrinsic(sigma):
    S = np.linspace(50, 150, 201)
    K, T, r, q = 100.0, 0.75, 0.05, 0.01
    fwd_call = np.maximum(S * np.exp(-q * T) - K * np.exp(-r * T), 0.0)
    fwd_put = np.maximum(K * np.exp(-r * T) - S * np.exp(-q * T), 0.0)
    call = P.bsm_greeks(S, K, T, r, q, sigma, "call")
    put = P.bsm_greeks(S, K, T, r, q, sigma, "put")
    np.testing.assert_allclose(call["price"], fwd_call, atol=1e-9)
    np.testing.assert_allclose(put["price"], fwd_put, atol=1e-9)
    for g in (call, put):
        assert all(np.all(np.isfinite(v)) for v in g.values())


# ---------------------------------------------------------------------------------------------
# Implied volatility
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("right,S,K,T,r,q,sigma", CASES)
def test_implied_volatility_round_trips_reference_prices(right, S, K, T, r, q, sigma):
    price = ref_price(right, S, K, T, r, q, sigma)
    iv = P.implied_volatility(price, S, K, T, r, q, right)
    assert iv == pytest.approx(sigma, abs=1e-7)
    assert iv == pytest.approx(vollib_iv(price, S, K, T, r, q, right[0]), abs=1e-7)


def test_implied_volatility_vectorised_and_extreme_vols():
    sig = np.array([0.01, 0.05, 0.5, 1.5, 3.0, 6.0])
    prices = [ref_price("call", 100, 102, 0.5, 0.02, 0.0, s) for s in sig]
    got = P.implied_volatility(prices, 100, 102, 0.5, 0.02, 0.0, "call")
    np.testing.assert_allclose(got, sig, atol=1e-7)


def test_implied_volatility_rejects_prices_outside_arbitrage_bounds():
    with pytest.raises(P.ImpliedVolatilityError):
        P.implied_volatility(5.0, 120, 100, 0.5, 0.0, 0.0, "call")  # below intrinsic 20
    with pytest.raises(P.ImpliedVolatilityError):
        P.implied_volatility(130.0, 120, 100, 0.5, 0.0, 0.0, "call")  # above the spot
    got = P.implied_volatility([5.0, 21.0], 120, 100, 0.5, 0.0, 0.0, "call", on_error="nan")
    assert math.isnan(got[0]) and got[1] > 0


# ---------------------------------------------------------------------------------------------
# Legs from dicts
# ---------------------------------------------------------------------------------------------

def test_leg_from_the_api_dict():
    leg = P.leg_from_dict({"instrument_type": "option", "right": "call", "strike": 6100,
                           "expiry": "2025-02-21", "quantity": -1, "price": 12.5},
                          dt.date(2025, 1, 22))
    assert (leg.kind, leg.right, leg.strike, leg.quantity, leg.premium, leg.multiplier) == \
        ("option", "call", 6100.0, -1, 12.5, 100)
    assert leg.expiry == dt.date(2025, 2, 21)
    assert leg.expiry_years == pytest.approx(30 / 365)
    stock = P.leg_from_dict({"instrument_type": "stock", "quantity": 100, "price": 50})
    assert stock.multiplier == 1 and stock.right is None


@pytest.mark.parametrize("row,field", [
    ({"instrument_type": "option", "right": "straddle", "strike": 1, "expiry": "2025-03-01",
      "quantity": 1}, "right"),
    ({"instrument_type": "option", "right": "call", "strike": -5, "expiry": "2025-03-01",
      "quantity": 1}, "strike"),
    ({"instrument_type": "option", "right": "call", "strike": 5, "quantity": 1}, "expiry"),
    ({"instrument_type": "option", "right": "call", "strike": 5, "expiry": "2025-03-01",
      "quantity": 1.5}, "quantity"),
    ({"instrument_type": "bond", "quantity": 1}, "kind"),
    ({"instrument_type": "option", "right": "put", "strike": 5, "expiry": "2025-03-01",
      "quantity": 1, "price": -2}, "premium"),
])
def test_bad_leg_dicts_name_the_field(row, field):
    with pytest.raises(P.InvalidLeg, match=rf"legs\[0\]\.{field}"):
        P.legs_from_dicts([row], dt.date(2025, 1, 2))


# ---------------------------------------------------------------------------------------------
# Position curves against py_vollib, leg by leg
# ---------------------------------------------------------------------------------------------

def test_position_curves_match_reference_sum_over_legs():
    vd = dt.date(2025, 1, 2)
    r, q, spot = 0.043, 0.013, 6100.0
    legs = [
        P.Leg("option", "put", 5900, None, 2, 20.0, 0.21, 100, dt.date(2025, 2, 21)),
        P.Leg("option", "call", 6200, None, -3, 35.0, 0.15, 100, dt.date(2025, 2, 21)),
        P.Leg("option", "call", 6000, None, 1, 60.0, 0.17, 50, dt.date(2025, 1, 12)),
        P.Leg("stock", None, None, None, 25, 6050.0, None, 1),
    ]
    grid = np.linspace(5000, 7000, 801)
    days = [0, 3, 10, 20]   # day 10 is the third leg's expiry, day 20 is past it
    got = P.position_curves(legs, grid, days, spot, r, q, vd)
    net_debit = 2 * 100 * 20 - 3 * 100 * 35 + 50 * 60 + 25 * 6050
    assert got["net_debit"] == pytest.approx(net_debit)
    for di, n in enumerate(days):
        for pi in (0, 137, 400, 555, 800):
            S = grid[pi]
            want = dict.fromkeys(("value", "delta", "gamma", "theta", "vega", "rho"), 0.0)
            for leg in legs:
                w = leg.quantity * leg.multiplier
                if leg.kind == "stock":
                    want["value"] += w * S
                    want["delta"] += w
                    continue
                T = max((leg.expiry - vd).days - n, 0) / 365
                if T == 0:
                    want["value"] += w * float(intrinsic(leg.right, S, leg.strike))
                    # at the strike itself the engine's documented convention is 0.5
                    step = 1.0 if S > leg.strike else 0.5 if S == leg.strike else 0.0
                    want["delta"] += w * (step if leg.right == "call" else step - 1.0)
                    continue  # a settled leg has no gamma, theta, vega or rho
                want["value"] += w * ref_price(leg.right, S, leg.strike, T, r, q, leg.iv)
                for g in ("delta", "gamma", "theta", "vega", "rho"):
                    want[g] += w * ref_greek(g, leg.right, S, leg.strike, T, r, q, leg.iv)
            for g, v in want.items():
                assert got[g][di, pi] == pytest.approx(v, rel=1e-9, abs=1e-6), (n, S, g)
            assert got["pnl"][di, pi] == pytest.approx(want["value"] - net_debit, abs=1e-6)


def test_synthetic_forward_obeys_parity_on_the_grid():
    K, T, r, q = 100.0, 0.5, 0.05, 0.02
    legs = [option("call", K, 1, 7.0, iv=0.25, years=T), option("put", K, -1, 5.0, iv=0.25, years=T)]
    grid = np.linspace(1, 300, 1001)
    got = P.position_curves(legs, grid, [0], 100.0, r, q)
    forward = 100 * (grid * math.exp(-q * T) - K * math.exp(-r * T))
    np.testing.assert_allclose(got["value"][0], forward, atol=1e-8)
    np.testing.assert_allclose(got["delta"][0], 100 * math.exp(-q * T), atol=1e-9)
    np.testing.assert_allclose(got["gamma"][0], 0.0, atol=1e-12)
    np.testing.assert_allclose(got["vega"][0], 0.0, atol=1e-9)


def test_greeks_per_leg_and_total_at_spot():
    spot, r, q = 100.0, 0.03, 0.01
    legs = [option("call", 105, -2, 3.0, iv=0.22, years=0.3),
            option("put", 95, 1, 2.5, iv=0.27, years=0.6)]
    res = P.analyze(legs, spot, r, q)
    total = dict.fromkeys(("delta", "gamma", "theta", "vega", "rho"), 0.0)
    for leg, row in zip(legs, res["greeks"]["legs"]):
        for g in total:
            unit = ref_greek(g, leg.right, spot, leg.strike, leg.expiry_years, r, q, leg.iv)
            assert row["per_unit"][g] == pytest.approx(unit, abs=1e-9)
            assert row["position"][g] == pytest.approx(unit * leg.quantity * 100, abs=1e-7)
            total[g] += unit * leg.quantity * 100
    for g, v in total.items():
        assert res["greeks"]["total"][g] == pytest.approx(v, abs=1e-7)
    assert set(res["units"]) >= {"delta", "gamma", "theta", "vega", "rho"}
    assert "per calendar day" in res["units"]["theta"] and "1 volatility point" in res["units"]["vega"]


# ---------------------------------------------------------------------------------------------
# Strategies: breakevens, max profit/loss, probability of profit
# ---------------------------------------------------------------------------------------------

def test_long_call_breakeven_unbounded_profit_and_closed_form_pop():
    K, c, spot, r, q, sigma, T = 100.0, 4.2, 98.0, 0.04, 0.01, 0.3, 0.25
    res = P.analyze([option("call", K, 1, c, iv=sigma, years=T)], spot, r, q)
    assert res["breakevens"] == [pytest.approx(K + c, abs=1e-9)]
    assert res["max_profit"] is None and res["max_profit_unbounded"] is True
    assert res["max_loss"] == pytest.approx(-c * 100) and res["max_loss_unbounded"] is False
    # P(S_T > K + c) for lognormal S_T with drift r - q: N(d2) at strike K + c.
    d2 = (math.log(spot / (K + c)) + (r - q - 0.5 * sigma ** 2) * T) / (sigma * math.sqrt(T))
    assert res["pop"] == pytest.approx(norm.cdf(d2), abs=1e-12)


def test_long_put_profit_bounded_at_zero_price():
    res = P.analyze([option("put", 50, 2, 3.0)], 50.0, 0.02, 0.0)
    assert res["max_profit"] == pytest.approx(2 * 100 * (50 - 3.0))
    assert res["max_profit_unbounded"] is False
    assert res["breakevens"] == [pytest.approx(47.0)]


def test_bull_call_vertical_closed_forms():
    k1, k2, debit = 100.0, 110.0, 4.0
    legs = [option("call", k1, 1, 6.5), option("call", k2, -1, 2.5)]
    res = P.analyze(legs, 102.0, 0.02, 0.0)
    assert res["net_debit"] == pytest.approx(debit * 100)
    assert res["breakevens"] == [pytest.approx(k1 + debit)]
    assert res["max_profit"] == pytest.approx((k2 - k1 - debit) * 100)
    assert res["max_loss"] == pytest.approx(-debit * 100)
    assert not res["max_profit_unbounded"] and not res["max_loss_unbounded"]


def test_bear_put_credit_vertical_closed_forms():
    k_low, k_high, credit = 90.0, 95.0, 1.8
    legs = [option("put", k_high, -3, 3.0), option("put", k_low, 3, 1.2)]
    res = P.analyze(legs, 100.0, 0.02, 0.0)
    assert res["breakevens"] == [pytest.approx(k_high - credit)]
    assert res["max_profit"] == pytest.approx(3 * 100 * credit)
    assert res["max_loss"] == pytest.approx(-3 * 100 * (k_high - k_low - credit))


def test_short_call_has_unbounded_loss():
    res = P.analyze([option("call", 100, -1, 3.0)], 100.0, 0.0, 0.0)
    assert res["max_loss"] is None and res["max_loss_unbounded"] is True
    assert res["max_profit"] == pytest.approx(300.0) and not res["max_profit_unbounded"]
    assert res["breakevens"] == [pytest.approx(103.0)]
    json.dumps(res, allow_nan=False)


def test_butterfly_max_profit_is_width_minus_debit():
    legs = [option("call", 95, 1, 7.1), option("call", 100, -2, 4.0), option("call", 105, 1, 2.1)]
    debit = 7.1 - 8.0 + 2.1
    res = P.analyze(legs, 100.0, 0.01, 0.0)
    assert res["max_profit"] == pytest.approx((5 - debit) * 100)
    assert res["max_loss"] == pytest.approx(-debit * 100)
    assert res["breakevens"] == [pytest.approx(95 + debit), pytest.approx(105 - debit)]


def _iron_condor():
    # short 95/105 strangle, long 90/110 wings, all with one expiry
    return [option("put", 90, 1, 0.6, iv=0.24, years=45 / 365),
            option("put", 95, -1, 1.5, iv=0.22, years=45 / 365),
            option("call", 105, -1, 1.3, iv=0.19, years=45 / 365),
            option("call", 110, 1, 0.4, iv=0.18, years=45 / 365)]


def test_iron_condor_breakevens_and_max_pnl():
    credit = -0.6 + 1.5 + 1.3 - 0.4
    res = P.analyze(_iron_condor(), 100.0, 0.03, 0.01)
    assert res["breakevens"] == [pytest.approx(95 - credit), pytest.approx(105 + credit)]
    assert res["max_profit"] == pytest.approx(credit * 100)
    assert res["max_loss"] == pytest.approx(-(5 - credit) * 100)
    assert res["profit_ranges"] == [[pytest.approx(95 - credit), pytest.approx(105 + credit)]]


def test_iron_condor_pop_matches_monte_carlo():
    legs = _iron_condor()
    spot, r, q, sigma, T = 100.0, 0.03, 0.01, 0.2, 45 / 365
    res = P.analyze(legs, spot, r, q, pop_iv=sigma)
    rng = np.random.default_rng(20250102)
    z = rng.standard_normal(1_000_000)
    ST = spot * np.exp((r - q - 0.5 * sigma ** 2) * T + sigma * math.sqrt(T) * z)
    pnl = sum(leg.quantity * 100 * (intrinsic(leg.right, ST, leg.strike) - leg.premium)
              for leg in legs)
    mc = float(np.mean(pnl > 0))
    assert res["pop"] == pytest.approx(mc, abs=3e-3)   # MC standard error ~5e-4


def test_covered_call_with_a_stock_leg():
    s0, K, c = 50.0, 55.0, 1.5
    legs = [P.Leg("stock", quantity=100, premium=s0, multiplier=1), option("call", K, -1, c)]
    res = P.analyze(legs, s0, 0.02, 0.0)
    assert res["breakevens"] == [pytest.approx(s0 - c)]
    assert res["max_profit"] == pytest.approx((K - s0 + c) * 100)
    assert res["max_loss"] == pytest.approx(-(s0 - c) * 100)   # the stock can only go to 0
    assert not res["max_loss_unbounded"] and not res["max_profit_unbounded"]


def test_expiry_curve_is_intrinsic_payoff_minus_debit():
    legs = _iron_condor()
    res = P.analyze(legs, 100.0, 0.03, 0.01, dates=[0, 45])
    S = np.array(res["grid"])
    want = sum(leg.quantity * 100 * (intrinsic(leg.right, S, leg.strike) - leg.premium)
               for leg in legs)
    np.testing.assert_allclose(res["expiry"]["pnl"], want, atol=1e-9)
    np.testing.assert_allclose(res["curves"][1]["pnl"], want, atol=1e-9)  # T+45 is expiry
    assert res["expiry"]["exact"] is True and res["expiry"]["days"] == pytest.approx(45)


def test_t_plus_n_breakeven_interpolates_the_model_curve():
    K, c, r, q, sigma, T = 100.0, 4.0, 0.02, 0.0, 0.3, 60 / 365
    res = P.analyze([option("call", K, 1, c, iv=sigma, years=T)], 100.0, r, q, dates=[20],
                    bounds=(60, 160), points=2001)
    T_left = T - 20 / 365
    want = brentq(lambda s: ref_price("call", s, K, T_left, r, q, sigma) - c, 60, 160)
    (got,) = res["curves"][0]["breakevens"]
    assert got == pytest.approx(want, abs=2e-3)


def test_calendar_spread_is_flagged_model_based():
    near = P.Leg("option", "call", 100, 30 / 365, -1, 2.0, 0.25)
    far = P.Leg("option", "call", 100, 90 / 365, 1, 4.5, 0.25)
    res = P.analyze([near, far], 100.0, 0.0, 0.0)
    assert res["expiry"]["exact"] is False
    assert not res["max_loss_unbounded"] and not res["max_profit_unbounded"]
    assert res["max_loss"] >= -250.0 - 1e-6           # cannot lose more than the debit
    lo, hi = res["breakevens"]
    assert lo < 100 < hi
    # at each breakeven the remaining far call is worth exactly what the position needs
    for s in (lo, hi):
        pnl = (-max(s - 100, 0) + ref_price("call", s, 100, 60 / 365, 0, 0, 0.25)) * 100 - 250
        assert abs(pnl) < 0.05


# ---------------------------------------------------------------------------------------------
# Scenarios, overlays, output shape
# ---------------------------------------------------------------------------------------------

def test_scenarios_iv_shift_days_and_percent_moves():
    spot, r, q = 100.0, 0.03, 0.0
    legs = [option("call", 105, -1, 2.0, iv=0.2, years=0.25),
            option("put", 95, 1, 1.8, iv=0.25, years=0.25)]
    out = P.scenario_pnl(legs, spot, r, q, iv_shifts=[-5, 0, 10], days_forward=[0, 30],
                         price_moves=[-10, 0, 5])
    debit = -2.0 * 100 + 1.8 * 100
    for i, shift in enumerate([-5, 0, 10]):
        for d, days in enumerate([0, 30]):
            for m, move in enumerate([-10, 0, 5]):
                S = spot * (1 + move / 100)
                T = 0.25 - days / 365
                want = sum(leg.quantity * 100 * ref_price(leg.right, S, leg.strike, T, r, q,
                                                          leg.iv + shift / 100)
                           for leg in legs) - debit
                assert out["pnl"][i][d][m] == pytest.approx(want, abs=1e-6)


def test_scenarios_sigma_moves():
    spot = 200.0
    legs = [option("call", 200, 1, 8.0, iv=0.3, years=0.5)]
    out = P.scenario_pnl(legs, spot, 0.0, 0.0, days_forward=[7, 30], price_moves=[-2, 1],
                         move_unit="sigma")
    for d, days in enumerate([7, 30]):
        one_sigma = 0.3 * spot * math.sqrt(days / 365)
        assert out["prices"][d] == [pytest.approx(spot - 2 * one_sigma),
                                    pytest.approx(spot + one_sigma)]


def test_several_strategies_on_one_grid():
    a = _iron_condor()
    b = [option("call", 100, 1, 3.0, iv=0.2, years=45 / 365)]
    both = P.analyze_many([a, b], 100.0, 0.03, 0.01, dates=[0, 10])
    assert len(both["strategies"]) == 2 and len(both["grid"]) == 1001
    alone = P.analyze(b, 100.0, 0.03, 0.01, grid=both["grid"], dates=[0, 10])
    S = np.array(both["grid"])
    want = 100 * np.array([ref_price("call", s, 100, 35 / 365, 0.03, 0.01, 0.2)
                           for s in S[::100]]) - 300
    np.testing.assert_allclose(both["strategies"][1]["curves"][1]["pnl"][::100], want, atol=1e-6)
    assert both["strategies"][1]["breakevens"] == alone["breakevens"] == [pytest.approx(103.0)]


def test_analysis_is_json_ready_with_dates():
    vd = dt.date(2025, 1, 22)
    legs = P.legs_from_dicts([
        {"instrument_type": "option", "right": "call", "strike": 6100, "expiry": "2025-02-21",
         "quantity": -1, "price": 12.5, "iv": 0.15},
        {"instrument_type": "option", "right": "call", "strike": 6150, "expiry": "2025-02-21",
         "quantity": 1, "price": 5.0, "iv": 0.14}], vd)
    res = P.analyze(legs, 6000.0, 0.04, 0.013, vd, dates=[0, dt.date(2025, 2, 1)])
    text = json.dumps(res, allow_nan=False)
    assert json.loads(text)["curves"][1]["days"] == 10
    assert res["curves"][1]["date"] == "2025-02-01" and res["expiry"]["date"] == "2025-02-21"
    assert res["breakevens"] == [pytest.approx(6100 + 7.5)]


def test_missing_iv_is_implied_from_the_premium():
    price = ref_price("put", 100, 95, 0.2, 0.01, 0.0, 0.31)
    res = P.analyze([P.Leg("option", "put", 95, 0.2, 1, price)], 100.0, 0.01, 0.0)
    assert res["greeks"]["legs"][0]["iv"] == pytest.approx(0.31, abs=1e-8)
    with pytest.raises(P.InvalidLeg, match="iv"):
        P.analyze([P.Leg("option", "put", 95, 0.2, 1)], 100.0, 0.01, 0.0)


def test_greek_curves_on_request():
    legs = _iron_condor()
    spot, r, q = 100.0, 0.03, 0.01
    plain = P.analyze(legs, spot, r, q, dates=[0, 20])
    assert "delta" not in plain["curves"][0]
    res = P.analyze(legs, spot, r, q, dates=[0, 20], greek_curves=True)
    S = np.array(res["grid"])
    for i, n in enumerate([0, 20]):
        T = 45 / 365 - n / 365
        for pi in (0, 333, 700, 1000):
            for g in ("delta", "gamma", "theta", "vega", "rho"):
                want = sum(leg.quantity * 100 * ref_greek(g, leg.right, S[pi], leg.strike, T,
                                                          r, q, leg.iv) for leg in legs)
                assert res["curves"][i][g][pi] == pytest.approx(want, rel=1e-9, abs=1e-8)


def test_stock_only_position_is_linear_with_no_pop():
    res = P.analyze([P.Leg("stock", quantity=-200, premium=40.0, multiplier=1)], 38.0)
    assert res["breakevens"] == [pytest.approx(40.0)]
    assert res["max_profit"] == pytest.approx(200 * 40.0)     # the stock goes to 0
    assert res["max_loss"] is None and res["max_loss_unbounded"] is True
    assert res["pop"] is None
    S = np.array(res["grid"])
    np.testing.assert_allclose(res["curves"][0]["pnl"], -200 * (S - 40.0), atol=1e-9)
