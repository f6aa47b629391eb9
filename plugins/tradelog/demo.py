"""A small, realistic demo book for ``tradeloop serve --demo`` (the ``load_demo_data`` hook),
built through the same service functions as the API: SPX verticals (one closed for a
profit, one open), a closed butterfly, an open iron condor, a closed stock trade, journal
entries, and one pending order."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from app.db import utcnow
from plugins.tradelog import journal, markettime, orders, service


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


def load(conn, user_id: int) -> None:
    now = utcnow()
    today = now.date()
    ago = lambda days, hour=15: (now - dt.timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)  # noqa: E731
    # expiries on trading days: a Friday (or the session before it when it is a holiday)
    session = lambda d: d if markettime.is_trading_day(d) else markettime.previous_trading_day(d)  # noqa: E731
    fri = lambda weeks: session(today + dt.timedelta(days=(4 - today.weekday()) % 7 + 7 * weeks))  # noqa: E731
    past = lambda days: session(today - dt.timedelta(days=days))  # noqa: E731

    won = _trade(conn, user_id, "SPX", "I:SPX",
                 [_opt(past(10), 5900, "put", -1), _opt(past(10), 5875, "put", 1)], ["4.20", "2.60"],
                 ago(30), ["income", "0dte-ish"], closing=["0.80", "0.30"], closed=ago(14))
    journal.create_journal_entry(conn, user_id, {
        "position_id": won["id"], "phase": "review", "object_of_reflection": "Bull put vertical into support",
        "bias_flags": ["none"], "notes": "Took it off at ~70% of max profit; plan followed."})
    _trade(conn, user_id, "SPX", "I:SPX",
           [_opt(past(5), 6000, "call", 1), _opt(past(5), 6050, "call", -2), _opt(past(5), 6100, "call", 1)],
           ["62.10", "35.40", "18.90"], ago(20), ["butterfly"], closing=["55.00", "28.00", "12.50"], closed=ago(9))
    lost = _trade(conn, user_id, "AAPL", "AAPL", [{"instrument_type": "stock", "quantity": 100}], ["228.40"],
                  ago(25), ["swing"], closing=["221.10"], closed=ago(15), fee=D("0"))
    journal.create_journal_entry(conn, user_id, {
        "position_id": lost["id"], "phase": "exit", "object_of_reflection": "Held through earnings",
        "bias_flags": ["anchoring", "hope"], "notes": "Stop was 223; moved it. Don't."})
    vertical = _trade(conn, user_id, "SPX", "I:SPX",
                      [_opt(fri(2), 6100, "call", 1), _opt(fri(2), 6150, "call", -1)], ["24.50", "9.80"],
                      ago(3), ["directional"])
    journal.create_journal_entry(conn, user_id, {
        "position_id": vertical["id"], "phase": "entry", "object_of_reflection": "Breakout above 6050",
        "bias_flags": ["fomo"], "notes": "Sized at half risk unit; target 6150 by expiry."})
    _trade(conn, user_id, "SPX", "I:SPX",
           [_opt(fri(4), 5700, "put", 1), _opt(fri(4), 5750, "put", -1),
            _opt(fri(4), 6250, "call", -1), _opt(fri(4), 6300, "call", 1)], ["6.10", "8.20", "7.90", "5.60"],
           ago(2), ["income", "iron-condor"])
    orders.create_order(conn, user_id, {
        "order_type": "limit", "limit_price": D("-3.50"),
        "position_template": {"symbol": "SPX", "underlying": "I:SPX", "tags": ["income"],
                              "legs": [_opt(fri(1), 5850, "put", -1), _opt(fri(1), 5825, "put", 1)]}})
