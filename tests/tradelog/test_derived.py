"""Derived metadata (pure functions): strategy recognition and payoff extremes at expiry,
against hand-computed values."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from plugins.tradelog import derived

E1, E2 = dt.date(2030, 1, 18), dt.date(2030, 2, 15)


def o(strike, right, qty, expiry=E1):
    return {"id": f"{strike}{right}{qty}{expiry}", "instrument_type": "option", "expiry": expiry, "strike": D(strike),
            "right": right, "quantity": qty, "multiplier": 100}


def stock(qty):
    return {"id": f"s{qty}", "instrument_type": "stock", "expiry": None, "strike": None, "right": None,
            "quantity": qty, "multiplier": 1}


@pytest.mark.parametrize("legs,name", [
    ([o(100, "call", 1)], "single"),
    ([o(100, "call", 1), o(105, "call", -1)], "vertical"),
    ([o(100, "put", -2), o(95, "put", 2)], "vertical"),
    ([o(100, "call", 1), o(100, "put", 1)], "straddle"),
    ([o(105, "call", -1), o(95, "put", -1)], "strangle"),
    ([o(100, "call", -1), o(100, "call", 1, E2)], "calendar"),
    ([o(100, "call", -1), o(105, "call", 1, E2)], "diagonal"),
    ([o(95, "call", 1), o(100, "call", -2), o(105, "call", 1)], "butterfly"),
    ([o(95, "call", 1), o(100, "call", -2), o(110, "call", 1)], "custom"),  # broken wing
    ([o(90, "put", 1), o(95, "put", -1), o(105, "call", -1), o(110, "call", 1)], "iron_condor"),
    ([o(90, "put", 1), o(100, "put", -1), o(100, "call", -1), o(110, "call", 1)], "iron_butterfly"),
    ([o(90, "call", 1), o(95, "call", -1), o(105, "call", -1), o(110, "call", 1)], "condor"),
    ([stock(100)], "stock"),
    ([stock(100), o(110, "call", -1)], "covered_call"),
    ([stock(100), o(90, "put", 1)], "protective_put"),
    ([o(100, "call", 1), o(105, "call", -2)], "custom"),  # ratio spread
    ([], "custom"),
])
def test_strategy_recognition(legs, name):
    assert derived.derived_strategy(legs) == name


@pytest.mark.parametrize("legs,debit,expected", [
    ([o(100, "call", 1)], D(500), (None, D(-500))),                      # long call: loss = premium
    ([o(100, "put", -1)], D(-300), (D(300), D(-9700))),                  # short put: S can't go below 0
    ([o(100, "call", -1)], D(-300), (D(300), None)),                     # naked short call: unbounded loss
    ([o(100, "call", 1), o(105, "call", -1)], D(200), (D(300), D(-200))),
    ([o(95, "call", 1), o(100, "call", -2), o(105, "call", 1)], D(100), (D(400), D(-100))),
    ([o(90, "put", 1), o(95, "put", -1), o(105, "call", -1), o(110, "call", 1)], D(-150), (D(150), D(-350))),
    ([o(100, "call", -1), o(100, "call", 1, E2)], D(200), (None, None)),  # needs a pricing model
    ([stock(100), o(110, "call", -1)], D(9800), (D(1200), D(-9800))),     # covered call
])
def test_payoff_extremes(legs, debit, expected):
    """max_loss is a P&L: the lowest one, negative for a loss (one sign convention everywhere)."""
    assert derived.payoff_extremes(legs, debit) == expected


def test_net_debit_and_initial_risk():
    legs = [o(100, "call", 1), o(105, "call", -1)]
    long_, short = legs
    fills = [{"leg_id": long_["id"], "price": D("3.00"), "quantity": 1, "fees": D("0.65")},
             {"leg_id": short["id"], "price": D("1.00"), "quantity": -1, "fees": D("0.65")},
             {"leg_id": long_["id"], "price": D("4.50"), "quantity": -1, "fees": D("0.65")}]
    assert derived.net_debit(legs, fills) == D("-250")  # 300 - 100 - 450
    assert derived.fees(fills) == D("1.95")
    assert derived.initial_risk(legs, fills) == D(200)  # opening debit 200 = the vertical's max loss (-200)
    assert derived.combo_units([2, -2]) == 2 and derived.combo_units([1, -2, 1]) == 1
