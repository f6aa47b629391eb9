"""Issue 15: max profit/loss, breakevens and POP over the whole price domain 0 <= S < inf.

Every reference here is computed in the test, independently of optionsmath: a textbook
Black-Scholes-Merton written out below (scipy.stats.norm), the expiry P&L of the legs built
from it, and a fine brute-force evaluation over 0..10 x spot (or a wider log grid where a
root lies further out) whose sign changes are solved with scipy's brentq.
"""
import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm

import optionsmath as om

MULT = 100


def bs(right, S, K, T, r, q, sigma):
    """Textbook BSM (Hull): d1 = (ln(S/K) + (r - q + sigma^2/2) T) / (sigma sqrt T)."""
    S = np.asarray(S, dtype=float)
    if T <= 0 or sigma <= 0:
        fwd = S * math.exp(-q * max(T, 0)) - K * math.exp(-r * max(T, 0))
        return np.maximum(fwd, 0.0) if right == "call" else np.maximum(-fwd, 0.0)
    with np.errstate(divide="ignore"):
        d1 = (np.log(S / K) + (r - q + 0.5 * sigma ** 2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    if right == "call":
        return S * math.exp(-q * T) * norm.cdf(d1) - K * math.exp(-r * T) * norm.cdf(d2)
    return K * math.exp(-r * T) * norm.cdf(-d2) - S * math.exp(-q * T) * norm.cdf(-d1)


def ref_expiry_pnl(specs, S, r, q):
    """P&L at the first expiry of specs = [(right, K, years, qty, premium, sigma)]."""
    T1 = min(s[2] for s in specs)
    total = np.zeros_like(np.asarray(S, dtype=float))
    debit = 0.0
    for right, K, T, qty, premium, sigma in specs:
        total = total + qty * MULT * bs(right, S, K, T - T1, r, q, sigma)
        debit += qty * MULT * premium
    return total - debit


def legs_of(specs):
    return [om.Leg("option", right, K, T, qty, premium, sigma, MULT) for right, K, T, qty, premium, sigma in specs]


def ref_roots(f, x):
    """Roots of f from the sign changes of f on the increasing grid x (brentq in each)."""
    y = f(x)
    idx = np.flatnonzero(np.sign(y[:-1]) * np.sign(y[1:]) < 0)
    return [brentq(lambda s: float(f(np.array([s]))[0]), x[i], x[i + 1], xtol=1e-10) for i in idx]


SPOT, R, Q = 6000.0, 0.043, 0.0
NEAR, FAR = 30 / 365, 61 / 365


def test_put_diagonal_max_loss_is_taken_over_the_whole_domain():
    """5-lot put diagonal: short 5 near 6000 puts (30 d), long 5 far 5950 puts (61 d), spot
    6000, vol 20 %, each priced at its model value (so the P&L at spot today is ~0).
    Far below the strikes the near puts pay 5 x 100 x (6000 - S) while the far puts are
    worth about 5 x 100 x (5950 e^(-r x 31/365) - S): the loss there is several times the
    worst case inside the plotted range. Reference: min of the test's own P&L on 200,001
    points over 0..10 x spot."""
    specs = [("put", 6000.0, NEAR, -5, float(bs("put", SPOT, 6000, NEAR, R, Q, 0.2)), 0.2),
             ("put", 5950.0, FAR, 5, float(bs("put", SPOT, 5950, FAR, R, Q, 0.2)), 0.2)]
    x = np.linspace(0, 10 * SPOT, 200_001)
    y = ref_expiry_pnl(specs, x, R, Q)
    out = om.expiry_profile(legs_of(specs), SPOT, R, Q)
    assert not out["exact"] and not out["max_loss_unbounded"]
    assert out["max_loss"] == pytest.approx(float(y.min()), abs=0.01)
    assert out["max_profit"] == pytest.approx(float(y.max()), abs=0.05)   # interior: grid-limited reference
    assert out["max_profit"] >= float(y.max()) - 1e-6
    # and the plotted analysis reports the same numbers, whatever its grid
    full = om.analyze(legs_of(specs), SPOT, R, Q, points=201)
    assert full["max_loss"] == pytest.approx(out["max_loss"], abs=1e-9)
    assert x[np.argmin(y)] < full["grid"][0]                     # the worst case is off the plot
    assert min(full["expiry"]["pnl"]) > 2 * full["max_loss"]      # which shows < half of it


def test_breakeven_far_above_spot_and_unbounded_loss():
    """Call diagonal with a dividend yield q = 1 %: short 1 near 6000 call (30 d), long 1
    far 5800 call (61 d), priced at the model. As S -> inf the far call grows like
    S e^(-q tau) < S, so the loss is unbounded (slope 100 (e^(-q x 31/365) - 1) ~ -0.085 per
    point) and the P&L, positive above the low breakeven, turns negative again only ~8x
    above spot. Reference: sign changes of the test's P&L on a log grid 1..1e8, brentq."""
    q = 0.01
    specs = [("call", 6000.0, NEAR, -1, float(bs("call", SPOT, 6000, NEAR, R, q, 0.18)), 0.18),
             ("call", 5800.0, FAR, 1, float(bs("call", SPOT, 5800, FAR, R, q, 0.18)), 0.18)]
    f = lambda s: ref_expiry_pnl(specs, s, R, q)  # noqa: E731
    want = ref_roots(f, np.geomspace(1.0, 1e8, 400_001))
    assert len(want) == 2 and want[1] > 3 * SPOT   # the high one far outside any plot
    out = om.analyze(legs_of(specs), SPOT, R, q, points=201)
    assert out["max_loss_unbounded"] and out["max_loss"] is None
    assert out["breakevens"] == pytest.approx(want, rel=1e-8)
    assert out["grid"][-1] < want[1]


def test_two_breakevens_inside_one_grid_cell():
    """A call calendar (short 6000 near, long 6000 far, vol 20 %) plotted on a 2-point grid
    [5000, 7000]: both breakevens lie inside that one cell. Reference: brentq on the
    test's P&L over 0..10 x spot."""
    specs = [("call", 6000.0, NEAR, -1, float(bs("call", SPOT, 6000, NEAR, R, Q, 0.2)), 0.2),
             ("call", 6000.0, FAR, 1, float(bs("call", SPOT, 6000, FAR, R, Q, 0.2)), 0.2)]
    want = ref_roots(lambda s: ref_expiry_pnl(specs, s, R, Q), np.linspace(0, 10 * SPOT, 100_001))
    assert len(want) == 2 and 5000 < want[0] < want[1] < 7000
    out = om.analyze(legs_of(specs), SPOT, R, Q, bounds=(5000, 7000), points=2)
    assert out["breakevens"] == pytest.approx(want, rel=1e-9)
    # q = 0: the far call tends to S - K e^(-r tau), so the P&L tends to a finite limit
    # 100 x 6000 (1 - e^(-r x 31/365)) - net debit as S -> inf: bounded both ways
    assert not out["max_loss_unbounded"] and not out["max_profit_unbounded"]
    debit = sum(s[3] * MULT * s[4] for s in specs)
    limit = MULT * 6000 * (1 - math.exp(-R * (FAR - NEAR))) - debit
    x = np.linspace(0, 10 * SPOT, 200_001)
    assert out["max_loss"] == pytest.approx(min(float(ref_expiry_pnl(specs, x, R, Q).min()), limit), abs=0.01)


@pytest.mark.parametrize("right,strike,premium,want", [
    ("put", 6100.0, 100.0, 0.0),   # long put at intrinsic: P&L at S_T = spot is exactly 0
    ("call", 5900.0, 100.0, 0.0),  # the mirror call: 0 as well (it was 0.0 and the put 1.0)
    ("put", 6100.0, 90.0, 1.0),    # bought below intrinsic: +10 x 100 at S_T = spot, a profit
    ("call", 6100.0, 5.0, 0.0),    # out of the money, expiring now: -500 for sure
])
def test_pop_with_a_leg_expiring_now_is_a_point_mass(right, strike, premium, want):
    """T = 0: S_T is the spot with probability 1, so POP = 1 if P&L(spot) > 0 else 0.
    Hand: put 6100 at 100 -> P&L(6000) = 100 x (100 - 100) = 0 -> not a profit -> 0."""
    leg = om.Leg("option", right, strike, 0.0, 1, premium, 0.2, MULT)
    out = om.analyze([leg], SPOT, R, Q)
    assert out["pop"] == want


def test_near_zero_pnl_gives_no_spurious_breakevens():
    """Deep ITM covered call: long 100 shares at 200 + short 1 call K = 100 (vol 20 %, 30 d,
    r = q = 0) at its model value. By parity C - P = S - K, so the P&L today is
    100 (S - 200) - 100 (C(S) - C(200)) = 100 (P(200) - P(S)) <= ~0: it is ~1e-12 from zero
    on the whole upper half of the grid and never crosses it (reference: the same
    expression from the test's own BSM). At most one breakeven (where it meets the ~0 band),
    not one per grid point."""
    T = 30 / 365
    call = om.Leg("option", "call", 100.0, T, -1, float(bs("call", 200, 100, T, 0, 0, 0.2)), 0.2, MULT)
    shares = om.Leg("stock", quantity=100, premium=200.0, multiplier=1)
    out = om.analyze([shares, call], 200.0, 0.0, 0.0, bounds=(150, 400), points=1001)
    grid = np.array(out["grid"])
    ref = 100 * (bs("put", 200, 100, T, 0, 0, 0.2) - bs("put", grid, 100, T, 0, 0, 0.2))
    np.testing.assert_allclose(out["curves"][0]["pnl"], ref, atol=1e-6)
    assert np.all(ref <= 1e-9)
    assert len(out["curves"][0]["breakevens"]) <= 1
    assert len(out["breakevens"]) <= 1


def test_iv_zero_is_the_discounted_forward_intrinsic():
    """sigma = 0, T = 0.5: call = max(S e^(-qT) - K e^(-rT), 0) = 6000 - 5900 e^(-0.043 x 0.5)."""
    leg = om.Leg("option", "call", 5900.0, 0.5, 1, None, 0.0, MULT)
    out = om.analyze([leg], SPOT, R, 0.0)
    want = 6000 - 5900 * math.exp(-R * 0.5)
    assert out["greeks"]["legs"][0]["per_unit"]["price"] == pytest.approx(want, abs=1e-9)


def test_black76_position_rho_is_minus_t_times_value():
    """Options on a future F = 5000: Black-76 price from the test's formula
    e^(-rT) (F N(d1) - K N(d2)), d1 = (ln(F/K) + sigma^2 T/2)/(sigma sqrt T); position rho per
    1 % of r = -T x V x quantity x multiplier / 100. BSM's rho (spot held) differs."""
    F, K, T, r, sig = 5000.0, 5100.0, 90 / 365, 0.04, 0.22
    d1 = (math.log(F / K) + 0.5 * sig * sig * T) / (sig * math.sqrt(T))
    V = math.exp(-r * T) * (F * norm.cdf(d1) - K * norm.cdf(d1 - sig * math.sqrt(T)))
    leg = om.Leg("option", "call", K, T, 2, None, sig, 50)
    out = om.analyze([leg], F, r, 0.0, model="black76", greek_curves=True, bounds=(4000, 6000), points=5)
    total = out["greeks"]["total"]
    assert total["value"] == pytest.approx(2 * 50 * V, rel=1e-10)
    assert total["rho"] == pytest.approx(-T * 2 * 50 * V / 100, rel=1e-10)
    i = out["grid"].index(5000.0)
    assert out["curves"][0]["rho"][i] == pytest.approx(total["rho"], rel=1e-9)
    bsm = om.analyze([leg], F, r, 0.0, greek_curves=True, bounds=(4000, 6000), points=5)
    assert bsm["greeks"]["total"]["rho"] > 0
    with pytest.raises(ValueError, match="^model:"):
        om.analyze([leg], F, r, 0.0, model="heston")


def test_valuation_time_gives_fractional_time_to_settlement():
    """0-DTE at 10:00 New York (14:00Z) on Friday 2025-03-21: the SPXW (PM) call has 6 hours
    left, T = 6 / (365 x 24); the SPX monthly (AM) settled at the open, T = 0 (intrinsic).
    Reference price: the test's BSM with that T."""
    now = dt.datetime(2025, 3, 21, 14, 0, tzinfo=dt.timezone.utc)
    row = {"instrument_type": "option", "right": "call", "strike": 5650, "expiry": "2025-03-21",
           "quantity": 1, "iv": 0.15}
    pm = om.leg_from_dict(row, valuation_time=now, underlying="SPXW")
    am = om.leg_from_dict(row, valuation_time=now, underlying="SPX")
    assert pm.expiry_years == pytest.approx(6 / (365 * 24), rel=1e-12) and am.expiry_years == 0.0
    out = om.analyze([pm], 5660.0, 0.04, 0.0, valuation_time=now)
    want = float(bs("call", 5660.0, 5650, 6 / (365 * 24), 0.04, 0.0, 0.15))
    assert out["greeks"]["legs"][0]["per_unit"]["price"] == pytest.approx(want, abs=1e-9)
    assert want > 10.0   # has time value: the whole-day count would give intrinsic 10.0
    assert out["valuation_time"] == "2025-03-21T14:00:00Z" and out["valuation_date"] == "2025-03-21"
    settled = om.analyze([am], 5660.0, 0.04, 0.0, valuation_time=now)
    assert settled["greeks"]["legs"][0]["per_unit"]["price"] == pytest.approx(10.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Property: random strategies of up to 4 legs with mixed expiries
# ---------------------------------------------------------------------------------------------

leg_strategy = st.tuples(
    st.sampled_from(["call", "put"]),
    st.floats(0.7, 1.3),                      # strike / spot
    st.sampled_from([7, 21, 30, 45, 60, 90]),  # days to expiry
    st.sampled_from([-3, -2, -1, 1, 2, 3]),   # quantity
    st.floats(0.1, 0.6),                      # iv
    st.floats(0.5, 1.5),                      # premium / model value
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(leg_strategy, min_size=1, max_size=4), st.floats(0.0, 0.03), st.floats(0.0, 0.06))
def test_property_extremes_and_breakevens_over_a_dense_grid(rows, q, r):
    """For any such strategy: the reported max loss is <= the P&L at every point of a dense
    independent grid over 0..10 x spot (and max profit >=), and every sign change of that
    grid has a reported breakeven inside the cell where it happens."""
    spot = 100.0
    specs = []
    for right, k, days, qty, sigma, markup in rows:
        K = round(spot * k, 2)
        premium = float(bs(right, spot, K, days / 365, r, q, sigma)) * markup
        specs.append((right, K, days / 365, qty, premium, sigma))
    out = om.analyze(legs_of(specs), spot, r, q, points=51)
    x = np.linspace(0, 10 * spot, 20_001)
    y = ref_expiry_pnl(specs, x, r, q)
    scale = sum(abs(s[3]) * MULT * (s[1] + spot) + abs(s[3] * MULT * s[4]) for s in specs)
    tol = 1e-7 * scale
    if not out["max_loss_unbounded"]:
        assert out["max_loss"] <= float(y.min()) + tol
    if not out["max_profit_unbounded"]:
        assert out["max_profit"] >= float(y.max()) - tol
    sig = np.where(np.abs(y) <= tol, 0, np.sign(y))
    nz = np.flatnonzero(sig)
    changes = [(x[i], x[j]) for i, j in zip(nz[:-1], nz[1:]) if sig[i] != sig[j]]
    found = np.array(out["breakevens"])
    for lo, hi in changes:
        assert found.size and np.any((found >= lo - 1e-6) & (found <= hi + 1e-6)), (lo, hi, found)
