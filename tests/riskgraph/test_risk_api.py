"""The risk API over HTTP against independent closed forms and py_vollib: breakevens, max
profit/loss, POP, Greeks with their units, overlay on one grid, and 422s naming fields."""
from __future__ import annotations

import math

import pytest

from tests.riskgraph.helpers import API, add

VAL = "2031-01-03"
EXP = "2031-01-17"  # 14 calendar days later
T = 14 / 365


def long_call(**over):
    leg = {"instrument_type": "option", "right": "call", "strike": "100", "expiry": EXP, "quantity": 1,
           "price": "5", "iv": 0.2}
    leg.update(over)
    return leg


def N(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_long_call_closed_forms_and_greeks(app_factory, new_client):
    from py_vollib.black_scholes_merton import black_scholes_merton as bsm
    from py_vollib.black_scholes_merton.greeks import analytical as g
    app = app_factory(["riskgraph"])
    a = new_client(app)
    r = a.post(f"{API}/analyze", json={"spot": 100, "r": 0.03, "q": 0.01, "valuation_date": VAL,
                                       "legs": [long_call()], "min": 50, "max": 150, "points": 101,
                                       "days_forward": [0, 7]})
    assert r.status_code == 200, r.json
    out = r.json
    assert out["grid"][0] == 50 and out["grid"][-1] == 150 and len(out["grid"]) == 101
    (x,) = out["strategies"]
    assert x["source"] == "legs" and x["net_debit"] == pytest.approx(500)
    assert x["breakevens"] == [pytest.approx(105, abs=1e-9)]
    assert x["max_loss"] == pytest.approx(-500) and x["max_profit"] is None and x["max_profit_unbounded"]
    assert not x["max_loss_unbounded"]
    assert [c["days"] for c in x["curves"]] == [0, 7] and x["curves"][1]["date"] == "2031-01-10"
    # T+0 curve at the grid point 120 = (BSM value - premium) x 100
    i = out["grid"].index(120)
    expect = (bsm("c", 120, 100, T, 0.03, 0.2, 0.01) - 5) * 100
    assert x["curves"][0]["pnl"][i] == pytest.approx(expect, abs=1e-6)
    assert x["expiry"]["pnl"][i] == pytest.approx((120 - 100 - 5) * 100, abs=1e-9)
    # Greeks at the spot (py_vollib: theta per day, vega per vol point), x 100
    tot = x["greeks"]["total"]
    for name, fn in (("delta", g.delta), ("gamma", g.gamma), ("theta", g.theta), ("vega", g.vega)):
        assert tot[name] == pytest.approx(fn("c", 100, 100, T, 0.03, 0.2, 0.01) * 100, abs=1e-6), name
    assert x["greeks"]["legs"][0]["per_unit"]["price"] == pytest.approx(bsm("c", 100, 100, T, 0.03, 0.2, 0.01),
                                                                        abs=1e-6)
    # POP = P(S_T > 105), lognormal with drift r - q and the leg's iv
    d = (math.log(100 / 105) + (0.03 - 0.01 - 0.02) * T) / (0.2 * math.sqrt(T))
    assert x["pop"] == pytest.approx(N(d), abs=1e-9)
    assert "per calendar day" in out["units"]["theta"] and "volatility point" in out["units"]["vega"]


@pytest.mark.parametrize("geometry, debit, expect", [
    # (strategy, side, strike, width) ; debit ; (max profit, max loss, breakevens)
    (("vertical", "call", "100", 10), "4", (600, -400, [104])),
    (("vertical", "put", "100", 10), "3", (700, -300, [97])),
    (("butterfly", "call", "100", 10), "2", (800, -200, [92, 108])),
    (("butterfly", "put", "100", 5), "1.5", (350, -150, [96.5, 103.5])),
    (("single", "put", "100", None), "2.5", (9750, -250, [97.5])),
])
def test_saved_strategies_match_closed_forms(app_factory, new_client, geometry, debit, expect):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    kind, side, strike, width = geometry
    s = add(a, symbol="XYZ", strategy=kind, side=side, strike=strike, width=width, debit=debit, expiration=EXP, dte=14)
    r = a.get(f"{API}/strategies/{s['id']}/risk?spot=100&iv=0.25&valuation_date={VAL}&points=11")
    assert r.status_code == 200, r.json
    (x,) = r.json["strategies"]
    max_profit, max_loss, breakevens = expect
    assert x["source"] == "strategy" and x["strategy_id"] == s["id"]
    assert x["net_debit"] == pytest.approx(float(debit) * 100, abs=1e-9)   # the debit is the net premium
    assert x["max_profit"] == pytest.approx(max_profit, abs=1e-6) and not x["max_profit_unbounded"]
    assert x["max_loss"] == pytest.approx(max_loss, abs=1e-6) and not x["max_loss_unbounded"]
    assert x["breakevens"] == pytest.approx(breakevens, abs=1e-6)


def test_several_strategies_overlaid_on_one_grid(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    s1 = add(a, symbol="XYZ", strike="100", width=10, debit="4", expiration=EXP, label="v1")
    s2 = add(a, symbol="XYZ", strategy="butterfly", strike="105", width=5, debit="1", expiration=EXP, label="fly")
    r = a.post(f"{API}/analyze", json={"spot": 100, "iv": 0.2, "valuation_date": VAL, "legs": [long_call()],
                                       "strategy_ids": [s1["id"], s2["id"]], "points": 301, "greek_curves": True})
    assert r.status_code == 200, r.json
    out = r.json
    assert [x["source"] for x in out["strategies"]] == ["legs", "strategy", "strategy"]
    assert [x["label"] for x in out["strategies"][1:]] == ["v1", "fly"]
    assert len(out["grid"]) == 301 and out["grid"][0] <= 90 and out["grid"][-1] >= 110  # spans every strike
    for x in out["strategies"]:
        assert len(x["curves"][0]["pnl"]) == 301 and len(x["expiry"]["pnl"]) == 301
        assert len(x["curves"][0]["delta"]) == 301
    # expiry payoff of the vertical on the shared grid: clip(S - 100, 0, 10) x 100 - 400
    for S, pnl in zip(out["grid"], out["strategies"][1]["expiry"]["pnl"]):
        assert pnl == pytest.approx(min(max(S - 100, 0), 10) * 100 - 400, abs=1e-6)


def test_validation_errors_name_fields(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    base = {"spot": 100, "valuation_date": VAL, "legs": [long_call()]}
    cases = [
        ({"points": 1}, "points"), ({"points": 5002}, "points"), ({"spot": 0}, "spot"), ({"spot": "x"}, "spot"),
        ({"iv": 11}, "iv"), ({"iv": -0.1}, "iv"), ({"r": 5}, "r"),
        ({"days_forward": list(range(21))}, "days_forward"), ({"days_forward": []}, "days_forward"),
        ({"min": 50}, "max"), ({"min": 150, "max": 50}, "max"),
        ({"legs": None}, "legs"), ({"legs": []}, "legs"),
        ({"legs": [long_call(strike=None)]}, "legs"), ({"legs": [long_call(quantity=0)]}, "legs"),
        ({"legs": [long_call(iv=-0.1)]}, "legs"), ({"legs": [long_call(right="straddle")]}, "legs"),
        ({"legs": [long_call(expiry="2030-12-31")]}, "legs"),          # expired before the valuation date
        ({"legs": [long_call(iv=None, price="150")]}, "legs"),         # above the spot: no iv implies it
        ({"strategy_ids": ["a", "a"]}, "strategy_ids"),
    ]
    for over, field in cases:
        r = a.post(f"{API}/analyze", json={**base, **over})
        assert r.status_code == 422, (over, r.status_code, r.json)
        assert field in r.json["errors"]["json"], (over, r.json)
    s = add(a, expiration=EXP)
    r = a.post(f"{API}/analyze", json={"spot": 6000, "valuation_date": VAL, "strategy_ids": [s["id"]]})
    assert r.status_code == 422 and "iv" in r.json["errors"]["json"]
    r = a.post(f"{API}/analyze", json={"spot": 6000, "iv": 0.2, "strategy_ids": ["55555555-aaaa-4aaa-8aaa-000000000000"]})
    assert r.status_code == 404
    assert a.get(f"{API}/strategies/{s['id']}/risk?iv=0.2").status_code == 422        # spot missing
    assert a.get(f"{API}/strategies/{s['id']}/risk?spot=6000&iv=0.2&points=0").status_code == 422
    assert a.get(f"{API}/strategies/{s['id']}/risk?spot=6000&iv=0.2&valuation_date=2031-02-01").status_code == 422
    assert a.post(f"{API}/analyze", data="{not json", headers={"Content-Type": "application/json"}).status_code == 400


def test_request_shape_says_what_it_means(app_factory, new_client):
    """Issue 15 items 3 and 6, each against a value worked out here."""
    app = app_factory(["riskgraph"])
    a = new_client(app)
    base = {"spot": 100, "valuation_date": VAL, "legs": [long_call()], "points": 11}
    # fractional quantities are refused (not truncated to 1, nor 0.4 -> "must not be 0")
    for qty in (1.5, 0.4):
        r = a.post(f"{API}/analyze", json={**base, "legs": [long_call(quantity=qty)]})
        assert r.status_code == 422 and r.json["errors"]["json"]["legs"]["0"]["quantity"] == ["Not a valid integer."]
    # iv 0 is accepted: a call with no volatility is worth its discounted forward intrinsic,
    # S - K e^(-rT) = 100 - 90 e^(-0.05 x 14/365) = 10.172... per share
    r = a.post(f"{API}/analyze", json={**base, "r": 0.05, "iv": 0, "legs": [long_call(strike="90", iv=None, price=None)]})
    assert r.status_code == 200, r.json
    assert r.json["strategies"][0]["greeks"]["legs"][0]["per_unit"]["price"] == pytest.approx(
        100 - 90 * math.exp(-0.05 * T), abs=1e-9)
    # days_forward: one integer is one T+n curve; T+0 is always drawn first
    for given, want in ((3, [0, 3]), ([7], [0, 7]), ([7, 0, 7], [0, 7])):
        r = a.post(f"{API}/analyze", json={**base, "days_forward": given})
        assert [c["days"] for c in r.json["strategies"][0]["curves"]] == want, given
    # a premium below intrinsic with T > 0 names the bound, without "(T must be > 0)"
    r = a.post(f"{API}/analyze", json={**base, "legs": [long_call(strike="80", iv=None, price="10")]})
    assert r.status_code == 422
    text = str(r.json["errors"]["json"]["legs"])
    assert "outside the no-arbitrage bounds" in text and "T must be > 0" not in text
    # a huge strike is "too large", not "Not a valid number"
    r = a.post(f"{API}/analyze", json={**base, "legs": [long_call(strike=1e30)]})
    assert r.status_code == 422 and "too large" in str(r.json["errors"]["json"]["legs"]).lower()
    # a saved strategy priced without iv: the error is under the query location on GET
    s = add(a, expiration=EXP)
    r = a.get(f"{API}/strategies/{s['id']}/risk?spot=6000&valuation_date={VAL}")
    assert r.status_code == 422 and r.json["errors"] == {"query": {"iv": ["required to price saved strategies"]}}
    # both valuation_date and valuation_time: say which one
    r = a.post(f"{API}/analyze", json={**base, "valuation_time": "2031-01-03T15:00:00Z"})
    assert r.status_code == 422 and "valuation_time" in r.json["errors"]["json"]


def test_black76_and_valuation_time_over_http(app_factory, new_client):
    """Black-76: position rho = -T x V x 100 / 100 (per 1 % of r) with V from the formula here.
    valuation_time 2031-01-17T15:00Z on the expiry day of a PM-settled leg (underlying SPY):
    T = 6 h / (365 x 24 h) to the 16:00 New York (21:00Z, EST) close."""
    app = app_factory(["riskgraph"])
    a = new_client(app)
    F, K, r = 100.0, 100.0, 0.03
    body = {"spot": F, "r": r, "model": "black76", "valuation_date": VAL, "points": 5, "legs": [long_call(price=None)]}
    out = a.post(f"{API}/analyze", json=body).json
    d1 = 0.5 * 0.2 * math.sqrt(T)
    V = math.exp(-r * T) * (F * N(d1) - K * N(d1 - 0.2 * math.sqrt(T)))
    tot = out["strategies"][0]["greeks"]["total"]
    assert out["model"] == "black76" and tot["value"] == pytest.approx(100 * V, rel=1e-9)
    assert tot["rho"] == pytest.approx(-T * V, rel=1e-9)
    body = {"spot": 101, "underlying": "SPY", "valuation_time": "2031-01-17T15:00:00Z", "points": 5,
            "legs": [long_call(price=None)]}
    out = a.post(f"{API}/analyze", json=body)
    assert out.status_code == 200, out.json
    leg = out.json["strategies"][0]["greeks"]["legs"][0]
    assert leg["years"] == pytest.approx(6 / (365 * 24), rel=1e-12)
    assert leg["per_unit"]["price"] > 1.0   # time value on top of the intrinsic 1.00
