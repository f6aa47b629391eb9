"""A small, realistic demo book for ``tradeloop serve --demo`` (the ``load_demo_data`` hook),
built through the same service functions as the API: SPX verticals (one closed for a
profit, one open), a closed butterfly, an open iron condor, a closed stock trade, journal
entries, and one pending order.

Dates follow the exchange's calendar (``optionsmath``'s market time, on exchange-calendars):
every fill is inside a regular session of a trading day, at least half an hour after the
open and before the close (early closes included), and every option expires on a weekly
expiry that is a trading day (a holiday Friday rolls back to the session before, as SPX
weeklies do). ``book_dates(now)`` returns them, so a test can check them against the calendar.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import optionsmath as om

from app.db import utcnow
from plugins.tradelog import journal, orders, service

UNDERLYING = "I:SPX"


def session_on_or_before(day: dt.date) -> dt.date:
    return day if om.is_trading_day(day, UNDERLYING) else om.previous_trading_day(day, UNDERLYING)


def weekly_expiry_on_or_after(day: dt.date) -> dt.date:
    """The Friday on or after ``day``, or the session before it when that Friday is a holiday."""
    friday = day + dt.timedelta(days=(4 - day.weekday()) % 7)
    return session_on_or_before(friday)


def during_session(day: dt.date, minutes_after_open: int) -> dt.datetime:
    """A moment inside ``day``'s regular session (UTC): ``minutes_after_open`` after the open,
    kept at least 15 minutes before the close."""
    cal = om.get_calendar(om.calendar_name(UNDERLYING))
    opening = cal.session_open(day.isoformat()).to_pydatetime().astimezone(dt.timezone.utc)
    closing = cal.session_close(day.isoformat()).to_pydatetime().astimezone(dt.timezone.utc)
    return min(opening + dt.timedelta(minutes=minutes_after_open), closing - dt.timedelta(minutes=15))


def book_dates(now: dt.datetime) -> dict:
    """Every date of the demo book, from ``now`` (UTC): sessions for fills, expiries for legs."""
    today = now.date()
    # the last session that has already opened (today's counts once it is 45 minutes old)
    last = session_on_or_before(today)
    if during_session(last, 45) > now:
        last = om.previous_trading_day(last, UNDERLYING)

    def sessions_back(n: int) -> dt.date:  # the n-th session before the last one
        day = last
        for _ in range(n):
            day = om.previous_trading_day(day, UNDERLYING)
        return day
    d = {
        "won_open": sessions_back(21), "won_close": sessions_back(8),
        "fly_open": sessions_back(14), "fly_close": sessions_back(5),
        "stock_open": sessions_back(18), "stock_close": sessions_back(11),
        "vertical_open": sessions_back(2), "condor_open": sessions_back(1),
    }
    d["won_expiry"] = weekly_expiry_on_or_after(d["won_close"])
    d["fly_expiry"] = weekly_expiry_on_or_after(d["fly_close"])
    first_open = weekly_expiry_on_or_after(today + dt.timedelta(days=1))  # the next expiry after today
    d["order_expiry"] = weekly_expiry_on_or_after(first_open + dt.timedelta(days=1))
    d["vertical_expiry"] = weekly_expiry_on_or_after(first_open + dt.timedelta(days=8))
    d["condor_expiry"] = weekly_expiry_on_or_after(first_open + dt.timedelta(days=22))
    return d


def _opt(expiry, strike, right, qty):
    return {"instrument_type": "option", "expiry": expiry, "strike": D(strike), "right": right, "quantity": qty}


def _trade(conn, user_id, symbol, underlying, legs, prices, opened, tags, closing=None, closed=None,
           fee=D("1.30")):
    """Create, fill (and optionally close) a position; returns it."""
    p = service.create_position(conn, user_id, {"symbol": symbol, "underlying": underlying, "tags": tags,
                                                "legs": legs})
    for leg, price in zip(p["legs"], prices):
        service.record_fill(conn, user_id, p["id"], {"leg_id": leg["id"], "price": D(price),
                                                     "quantity": leg["quantity"], "fees": fee, "occurred_at": opened})
    if closing is not None:
        for leg, price in zip(p["legs"], closing):
            service.record_fill(conn, user_id, p["id"], {"leg_id": leg["id"], "price": D(price),
                                                         "quantity": -leg["quantity"], "fees": fee,
                                                         "occurred_at": closed})
        p = service.get_position(conn, user_id, p["id"])
        p = service.close_position(conn, user_id, p["id"], {"closed_at": closed}, expected=p["version"])
    return p


def load(conn, user_id: int, now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    d = book_dates(now)
    at = during_session

    won = _trade(conn, user_id, "SPX", UNDERLYING,
                 [_opt(d["won_expiry"], 5900, "put", -1), _opt(d["won_expiry"], 5875, "put", 1)], ["4.20", "2.60"],
                 at(d["won_open"], 47), ["income", "0dte-ish"], closing=["0.80", "0.30"], closed=at(d["won_close"], 212))
    journal.create_journal_entry(conn, user_id, {
        "position_id": won["id"], "phase": "review", "object_of_reflection": "Bull put vertical into support",
        "bias_flags": ["none"], "notes": "Took it off at ~70% of max profit; plan followed."})
    _trade(conn, user_id, "SPX", UNDERLYING,
           [_opt(d["fly_expiry"], 6000, "call", 1), _opt(d["fly_expiry"], 6050, "call", -2),
            _opt(d["fly_expiry"], 6100, "call", 1)],
           ["62.10", "35.40", "18.90"], at(d["fly_open"], 95), ["butterfly"], closing=["55.00", "28.00", "12.50"],
           closed=at(d["fly_close"], 330))
    lost = _trade(conn, user_id, "AAPL", "AAPL", [{"instrument_type": "stock", "quantity": 100}], ["228.40"],
                  at(d["stock_open"], 33), ["swing"], closing=["221.10"], closed=at(d["stock_close"], 61), fee=D("0"))
    journal.create_journal_entry(conn, user_id, {
        "position_id": lost["id"], "phase": "exit", "object_of_reflection": "Held through earnings",
        "bias_flags": ["anchoring", "hope"], "notes": "Stop was 223; moved it. Don't."})
    vertical = _trade(conn, user_id, "SPX", UNDERLYING,
                      [_opt(d["vertical_expiry"], 6100, "call", 1), _opt(d["vertical_expiry"], 6150, "call", -1)],
                      ["24.50", "9.80"], at(d["vertical_open"], 140), ["directional"])
    journal.create_journal_entry(conn, user_id, {
        "position_id": vertical["id"], "phase": "entry", "object_of_reflection": "Breakout above 6050",
        "bias_flags": ["fomo"], "notes": "Sized at half risk unit; target 6150 by expiry."})
    _trade(conn, user_id, "SPX", UNDERLYING,
           [_opt(d["condor_expiry"], 5700, "put", 1), _opt(d["condor_expiry"], 5750, "put", -1),
            _opt(d["condor_expiry"], 6250, "call", -1), _opt(d["condor_expiry"], 6300, "call", 1)],
           ["6.10", "8.20", "7.90", "5.60"], at(d["condor_open"], 75), ["income", "iron-condor"])
    orders.create_order(conn, user_id, {
        "order_type": "limit", "limit_price": D("-3.50"),
        "position_template": {"symbol": "SPX", "underlying": UNDERLYING, "tags": ["income"],
                              "legs": [_opt(d["order_expiry"], 5850, "put", -1), _opt(d["order_expiry"], 5825, "put", 1)]}})
