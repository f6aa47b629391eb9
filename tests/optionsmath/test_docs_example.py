"""The worked calendar example in docs/risk-math.md: its numbers against an independent
computation here (textbook BSM with scipy's normal CDF, brentq roots, the lognormal POP),
and against optionsmath. A change in either the maths or the document fails this test."""
import math
import os
import re

import pytest
from scipy.optimize import brentq
from scipy.stats import norm

import optionsmath as om

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "risk-math.md")


def doc_table():
    text = open(DOC, encoding="utf-8").read()
    section = text.split("### Worked example: a call calendar", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*(net_debit|max_profit|max_loss|breakevens|pop)\s*\|\s*([^|]+)\|", line)
        if m:
            rows[m.group(1)] = [float(x) for x in m.group(2).split(",")]
    return rows


def call(S, K, T, r, sigma):
    d1 = (math.log(S / K) + (r + 0.5 * sigma ** 2) * T) / (sigma * math.sqrt(T))
    return S * norm.cdf(d1) - K * math.exp(-r * T) * norm.cdf(d1 - sigma * math.sqrt(T))


def test_worked_calendar_example_matches_the_document():
    r, sig, t1, t2 = 0.05, 0.2, 30 / 365, 60 / 365
    near, far = round(call(100, 100, t1, r, sig), 2), round(call(100, 100, t2, r, sig), 2)
    assert (near, far) == (2.49, 3.65)
    debit = (far - near) * 100

    def pnl(S):  # at the near expiry: the far call has 30 days left
        return 100 * ((call(S, 100, t2 - t1, r, sig) if S > 0 else 0.0) - max(S - 100, 0)) - debit

    want = {
        "net_debit": [debit],
        "max_profit": [pnl(100.0)],                       # the peak is at the strike
        "max_loss": [-debit],                             # S -> 0
        "breakevens": [brentq(pnl, 80, 100), brentq(pnl, 100, 120)],
    }
    z = lambda x: (math.log(x / 100) - (r - 0.5 * sig ** 2) * t1) / (sig * math.sqrt(t1))  # noqa: E731
    want["pop"] = [norm.cdf(z(want["breakevens"][1])) - norm.cdf(z(want["breakevens"][0]))]
    doc = doc_table()
    assert set(doc) == set(want)
    for key, values in want.items():
        places = 4 if key == "pop" else 2
        assert doc[key] == [round(v, places) for v in values], key
    legs = [om.Leg("option", "call", 100.0, t1, -1, near, sig, 100), om.Leg("option", "call", 100.0, t2, 1, far, sig, 100)]
    out = om.analyze(legs, 100.0, r, 0.0)
    assert out["net_debit"] == pytest.approx(debit, abs=1e-9)
    assert out["max_profit"] == pytest.approx(want["max_profit"][0], abs=1e-6)
    assert out["max_loss"] == pytest.approx(want["max_loss"][0], abs=1e-6)
    assert out["breakevens"] == pytest.approx(want["breakevens"], abs=1e-7)
    assert out["pop"] == pytest.approx(want["pop"][0], abs=1e-7)
