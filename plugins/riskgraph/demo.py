"""A newcomer's first risk graph: a few SPX strategies, a template and market inputs,
created through the same service functions as real traffic.

Each strategy expires on a weekly SPX expiry that is a trading day of the exchange
(``optionsmath``'s market time on exchange-calendars: a holiday Friday rolls back to the
session before), the first one on or after ``dte`` calendar days from today.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import optionsmath as om

from app.db import utcnow
from plugins.riskgraph import service

SPOT = 6000.0
MARKET_INPUTS = {"spot": SPOT, "iv": 0.16, "r": 0.04, "q": 0.013}
UNDERLYING = "I:SPX"

STRATEGIES = [
    dict(strategy="vertical", side="call", strike=Decimal("6000"), width=25, dte=14,
         debit=Decimal("11.40"), label="6000/6025 call vertical", color="#2b7bb9"),
    dict(strategy="butterfly", side="put", strike=Decimal("5950"), width=25, dte=7,
         debit=Decimal("4.10"), label="5925/5950/5975 put fly", color="#d9822b"),
    dict(strategy="single", side="call", strike=Decimal("6100"), width=None, dte=21,
         debit=Decimal("18.75"), label="6100 long call", color="#6a9f3a", visible=False),
]


def weekly_expiry_on_or_after(day: dt.date) -> dt.date:
    """The Friday on or after ``day``, or the session before it when that Friday is a holiday."""
    friday = day + dt.timedelta(days=(4 - day.weekday()) % 7)
    if om.is_trading_day(friday, UNDERLYING):
        return friday
    return om.previous_trading_day(friday, UNDERLYING)


def expiration_for(today: dt.date, dte: int) -> dt.date:
    """The demo's expiry for a ``dte``-day strategy: a trading-day weekly, never today or earlier."""
    expiry = weekly_expiry_on_or_after(today + dt.timedelta(days=dte))
    if expiry <= today:  # (a holiday roll-back onto today)
        expiry = weekly_expiry_on_or_after(today + dt.timedelta(days=dte + 7))
    return expiry


def load(conn, user_id: int, now: dt.datetime | None = None) -> None:
    today = (now or utcnow()).date()
    service.set_market_inputs(conn, user_id, "SPX", dict(MARKET_INPUTS))
    for i, s in enumerate(STRATEGIES):
        expiration = expiration_for(today, s["dte"])
        service.create_strategy(conn, user_id, {"symbol": "SPX", "sort_order": i, **s, "dte": (expiration - today).days,
                                                "expiration": expiration}, change_reason="demo data")
    service.create_template(conn, user_id, {
        "name": "ATM call vertical, 2 weeks", "description": "25-wide debit call spread at the money",
        "symbol": "SPX", "strategy": "vertical", "side": "call", "strike_offset": 0, "width": 25,
        "dte_target": 14, "debit_estimate": Decimal("11.50")})
