"""Helpers for the tradelog tests (HTTP only, through the ``Client`` of tests/conftest.py)."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest


def day(offset: int) -> str:
    """A trading day about ``offset`` days from today: the first session on or after
    today + offset (offset >= 0), or the last one on or before it (offset < 0)."""
    from plugins.tradelog import markettime
    d = dt.date.today() + dt.timedelta(days=offset)
    if not markettime.is_trading_day(d):
        d = markettime.next_trading_day(d) if offset >= 0 else markettime.previous_trading_day(d)
    return d.isoformat()


def dte_of(expiry: str) -> int:
    """Calendar days from today in New York to ``expiry`` (the snapshot's DTE, by hand)."""
    from zoneinfo import ZoneInfo
    now_ny = dt.datetime.now(dt.timezone.utc).astimezone(ZoneInfo("America/New_York"))
    return (dt.date.fromisoformat(expiry) - now_ny.date()).days


def opt(expiry: str, strike, right: str, qty: int) -> dict:
    return {"instrument_type": "option", "expiry": expiry, "strike": str(strike), "right": right, "quantity": qty}


def key() -> str:
    return uuid.uuid4().hex


class TL:
    """A signed-in user's tradelog operations, asserting success."""

    def __init__(self, client):
        self.c = client

    def create(self, legs, symbol="SPX", underlying="I:SPX", **extra):
        r = self.c.post("/api/positions", json={"symbol": symbol, "underlying": underlying, "legs": legs, **extra},
                        idem=key())
        assert r.status_code == 201, r.json
        return r.json

    def fill(self, pid, leg_id, price, qty, fees="0", at="2025-02-05T10:30:00Z"):
        r = self.c.post(f"/api/positions/{pid}/fills", json={"leg_id": leg_id, "price": str(price), "quantity": qty,
                                                             "fees": str(fees), "occurred_at": at}, idem=key())
        assert r.status_code == 201, r.json
        return r.json

    def get(self, pid, **params):
        r = self.c.get(f"/api/positions/{pid}", query_string=params)
        assert r.status_code == 200, r.json
        return r.json

    def close(self, pid, closed_at=None):
        version = self.get(pid)["version"]
        r = self.c.post(f"/api/positions/{pid}/close", json={"closed_at": closed_at} if closed_at else {},
                        idem=key(), if_match=version)
        assert r.status_code == 200, r.json
        return r.json

    def snapshot(self, pid, **params):
        r = self.c.get(f"/api/positions/{pid}/snapshot", query_string=params)
        assert r.status_code == 200, r.json
        return r.json


@pytest.fixture
def tl_app(app_factory):
    return app_factory(["tradelog"])


@pytest.fixture
def tl(tl_app, new_client):
    return TL(new_client(tl_app))


def events_of(app, user_id, aggregate_id=None):
    from bus import outbox
    with app.extensions["tradeloop"].db.transaction() as conn:
        return outbox.read(conn, "tradelog.events", 0, user_id=user_id, aggregate_id=aggregate_id, limit=10_000)
