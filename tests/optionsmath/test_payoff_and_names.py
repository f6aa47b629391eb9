"""Expiry payoff, exact extremes and breakevens, strategy names, Decimal helpers.

Each expected number is worked out by hand in the test's docstring."""
from decimal import Decimal as D

import numpy as np
import pytest

import optionsmath as om

E1, E2 = "2030-01-18", "2030-02-15"


def opt(strike, right, quantity, expiry=E1, multiplier=100):
    return {"instrument_type": "option", "right": right, "strike": strike, "quantity": quantity,
            "multiplier": multiplier, "expiry": expiry}


def stock(quantity):
    return {"instrument_type": "stock", "quantity": quantity, "multiplier": 1}


def test_intrinsic_keeps_the_number_type():
    assert om.intrinsic("call", D("100"), D("103.25")) == D("3.25")
    assert om.intrinsic("put", D("100"), D("103.25")) == D("0.00")
    assert om.intrinsic("p", 100.0, 97.5) == 2.5


def test_vectorised_payoff_of_an_iron_condor():
    """Short 95/100 put spread + short 105/110 call spread, 1 lot x 100: value at expiry =
    100 x (max(95-S,0) - max(100-S,0) - max(S-105,0) + max(S-110,0)): -500 at S <= 95,
    0 on [100, 105], -500 at S >= 110, linear in between."""
    S = np.array([0, 90, 95, 97.5, 100, 102, 105, 107.5, 110, 200])
    got = om.expiry_payoff([95, 100, 105, 110], [False, False, True, True], [100, -100, -100, 100], S)
    np.testing.assert_allclose(got, [-500, -500, -500, -250, 0, 0, 0, -250, -500, -500])


@pytest.mark.parametrize("legs,debit,expected", [
    # bull call 100/110 for 3.00: max profit (10 - 3) x 100 = 700, max loss -300
    ([opt(D(100), "call", 1), opt(D(110), "call", -1)], D(300), (D(700), D(-300))),
    # short put 100 for 2.50 credit: profit 250, loss at S = 0: -(100 x 100) + 250 = -9,750
    ([opt(D(100), "put", -1)], D(-250), (D(250), D(-9750))),
    # long call: unbounded profit, loss = the debit
    ([opt(D(100), "call", 1)], D(500), (None, D(-500))),
    # short call: unbounded loss
    ([opt(D(100), "call", -1)], D(-500), (D(500), None)),
    # covered call: 100 shares at 98 + short 105 call for 1.20: max profit (105 - 98 + 1.2) x 100
    # = 820; max loss at S = 0: -9800 + 120 = -9,680
    ([stock(100), opt(D(105), "call", -1)], D("9680"), (D(820), D(-9680))),
    # calendar: needs a model
    ([opt(D(100), "call", -1), opt(D(100), "call", 1, E2)], D(200), (None, None)),
])
def test_payoff_extremes_as_pnl(legs, debit, expected):
    assert om.payoff_extremes(legs, debit) == expected


def test_payoff_extremes_with_floats_and_objects():
    legs = [om.Leg("option", "put", 100.0, 0.1, 1, 4.0, 0.2, 100), om.Leg("option", "put", 90.0, 0.1, -1, 1.0, 0.2, 100)]
    # bear put 100/90 for 3.00: profit (10 - 3) x 100 = 700, loss -300
    assert om.payoff_extremes(legs, 300.0) == (700.0, -300.0)


def test_breakevens_exact_per_segment_and_beyond_the_last_strike():
    """Iron condor 95/100/105/110 for a 1.50 credit (-150): P&L = 150 on [100,105]; roots
    where the short legs have lost 1.50: 100 - 1.5 = 98.5 and 105 + 1.5 = 106.5.
    Long call 100 for 4.00: root 104 (beyond the last strike, from its slope)."""
    condor = [opt(D(95), "put", 1), opt(D(100), "put", -1), opt(D(105), "call", -1), opt(D(110), "call", 1)]
    assert om.payoff_breakevens(condor, D(-150)) == [D("98.5"), D("106.5")]
    assert om.payoff_breakevens([opt(100.0, "call", 1)], 400.0) == [104.0]
    with pytest.raises(ValueError, match="^legs:"):
        om.payoff_breakevens([opt(100, "call", -1), opt(100, "call", 1, E2)], 200)


@pytest.mark.parametrize("legs,name", [
    ([opt(100, "call", 1)], "single"),
    ([opt(100, "call", 1), opt(110, "call", -1)], "vertical"),
    ([opt(100, "call", 1), opt(100, "put", 1)], "straddle"),
    ([opt(95, "put", -1), opt(105, "call", -1)], "strangle"),
    ([opt(100, "call", -1), opt(100, "call", 1, E2)], "calendar"),
    ([opt(100, "put", -1), opt(95, "put", 1, E2)], "diagonal"),
    ([opt(95, "call", 1), opt(100, "call", -2), opt(105, "call", 1)], "butterfly"),
    ([opt(90, "put", 1), opt(95, "put", -1), opt(105, "put", -1), opt(110, "put", 1)], "condor"),
    ([opt(95, "put", 1), opt(100, "put", -1), opt(100, "call", -1), opt(105, "call", 1)], "iron_butterfly"),
    ([opt(95, "put", 1), opt(100, "put", -1), opt(105, "call", -1), opt(110, "call", 1)], "iron_condor"),
    ([stock(100)], "stock"),
    ([stock(100), opt(105, "call", -1)], "covered_call"),
    ([stock(100), opt(95, "put", 1)], "protective_put"),
    ([opt(100, "call", 1), opt(110, "call", -2)], "custom"),
    ([opt(D("100.00"), "call", 1), opt("100", "put", 1)], "straddle"),   # 100.00 and "100": one strike
])
def test_classify_strategy(legs, name):
    assert om.classify_strategy(legs) == name


def test_decimal_helpers():
    assert om.to_decimal(0.1) == D("0.1")                   # shortest repr, not the binary expansion
    assert om.to_decimal("12.50") == D("12.50") and om.to_decimal(3) == D(3)
    assert om.to_decimal_or_none(None) is None and om.to_decimal_or_none(float("nan")) is None
    with pytest.raises(ValueError):
        om.to_decimal(float("inf"))
    with pytest.raises(ValueError):
        om.to_decimal("abc")
    assert om.cents(2.675) == D("2.68")        # 2.675 (decimal) -> half-even at 0.005 -> 2.68
    assert om.cents("2.665") == D("2.66")      # half-even: the 6 is even
    assert om.quantize(D("1.23456"), 4) == D("1.2346") and om.quantize(None) is None


def test_package_imports_nothing_heavy_until_used():
    """``import optionsmath`` must stay cheap (tradeloop --help imports the plugins): run in a
    fresh interpreter and check numpy/scipy/exchange_calendars are not loaded by it."""
    import subprocess
    import sys
    code = ("import sys, optionsmath; "
            "print(','.join(m for m in ('numpy', 'scipy', 'exchange_calendars', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
