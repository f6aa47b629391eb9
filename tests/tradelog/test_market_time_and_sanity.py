"""Market time (expiries on trading days, settlement style per root) and fill sanity
(future times, closes before the last fill, fees), and journal entries as events."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.tradelog.conftest import day, events_of, key, opt


@pytest.mark.parametrize("expiry,why", [
    ("2025-06-21", "a Saturday"),
    ("2025-12-25", "Christmas"),
    ("2025-04-18", "Good Friday"),
])
def test_an_expiry_on_a_non_trading_day_is_422(tl, expiry, why):
    r = tl.c.post("/api/positions", json={"symbol": "SPX", "legs": [opt(expiry, 6000, "call", 1)]}, idem=key())
    assert r.status_code == 422, why
    msg = r.json["errors"]["json"]["legs"]["0"]["expiry"][0]
    assert "not a trading day" in msg
    if expiry == "2025-04-18":
        assert "2025-04-17" in msg  # the previous trading day, where the exchange moved it


def test_expiry_checks_on_add_legs_and_orders(tl):
    p = tl.create([opt("2025-06-20", 100, "call", 1)], symbol="XYZ", underlying="XYZ")
    r = tl.c.patch(f"/api/positions/{p['id']}", json={"add_legs": [opt("2025-06-22", 100, "put", 1)]},
                   if_match=1, idem=key())
    assert r.status_code == 422 and "expiry" in r.json["errors"]["json"]["add_legs"]["0"]
    sunday = dt.date.today() + dt.timedelta(days=(6 - dt.date.today().weekday()) % 7 + 7)
    r = tl.c.post("/api/orders", json={"position_template": {"symbol": "XYZ", "legs": [
        opt(sunday.isoformat(), 100, "call", 1)]}, "limit_price": "1"}, idem=key())
    assert r.status_code == 422 and "expiry" in r.json["errors"]["json"]["position_template"]["0"]


def test_settlement_style_follows_the_root(tl):
    """SPX on its third Friday is AM (the open, 14:30 UTC in winter); SPX on another Friday is
    PM (the close, 21:00 UTC in winter); an AAPL option PM and physically settled; the day
    after Thanksgiving closes early (13:00 New York = 18:00 UTC)."""
    p = tl.create([opt("2025-01-17", 6000, "call", 1), opt("2025-01-24", 6000, "call", 1)])
    a = tl.create([opt("2025-11-28", 200, "call", 1)], symbol="AAPL", underlying="AAPL")
    s = tl.snapshot(p["id"])["legs"]
    assert [(x["settlement_time"], x["settlement_type"], x["settles_at"]) for x in s] == [
        ("AM", "cash", "2025-01-17T14:30:00.000Z"), ("PM", "cash", "2025-01-24T21:00:00.000Z")]
    (x,) = tl.snapshot(a["id"])["legs"]
    assert (x["settlement_time"], x["settlement_type"], x["settles_at"]) == ("PM", "physical", "2025-11-28T18:00:00.000Z")
    override = tl.create([{**opt("2025-01-24", 6000, "call", 1), "settlement_time": "AM"}])
    assert tl.snapshot(override["id"])["legs"][0]["settles_at"] == "2025-01-24T14:30:00.000Z"


def test_fill_sanity(tl):
    p = tl.create([{"instrument_type": "stock", "quantity": 100}], symbol="XYZ", underlying="XYZ")
    leg = p["legs"][0]["id"]
    now = dt.datetime.now(dt.timezone.utc)
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    future = tl.c.post(f"/api/positions/{p['id']}/fills", json={
        "leg_id": leg, "price": "10", "quantity": 100, "occurred_at": iso(now + dt.timedelta(hours=1))}, idem=key())
    assert future.status_code == 422 and "future" in future.json["errors"]["json"]["occurred_at"][0]
    skewed = tl.c.post(f"/api/positions/{p['id']}/fills", json={
        "leg_id": leg, "price": "10", "quantity": 100, "occurred_at": iso(now + dt.timedelta(seconds=30))}, idem=key())
    assert skewed.status_code == 201  # a client clock a little ahead is fine
    fee = tl.c.post(f"/api/positions/{p['id']}/fills", json={
        "leg_id": leg, "price": "10", "quantity": -100, "fees": "-1", "occurred_at": iso(now)}, idem=key())
    assert fee.status_code == 422 and "fees" in fee.json["errors"]["json"]
    tl.fill(p["id"], leg, "11", -100, at=iso(now + dt.timedelta(seconds=40)))
    before = tl.c.post(f"/api/positions/{p['id']}/close", json={"closed_at": iso(now - dt.timedelta(days=1))},
                       if_match=3, idem=key())
    assert before.status_code == 422 and "last fill" in before.json["errors"]["json"]["closed_at"][0]
    ahead = tl.c.post(f"/api/positions/{p['id']}/close", json={"closed_at": iso(now + dt.timedelta(days=1))},
                      if_match=3, idem=key())
    assert ahead.status_code == 422 and "closed_at" in ahead.json["errors"]["json"]
    assert tl.close(p["id"])["realized_pnl"] == "100.0000"


def test_journal_entries_emit_events_with_the_position_version(tl_app, tl):
    p = tl.create([opt(day(20), 100, "call", 1)], symbol="XYZ", underlying="XYZ")
    tl.fill(p["id"], p["legs"][0]["id"], "2", 1)
    r = tl.c.post("/api/journal_entries", json={"position_id": p["id"], "object_of_reflection": "why",
                                                "phase": "entry", "bias_flags": ["fomo"]}, idem=key())
    assert r.status_code == 201 and r.json["position_version"] == 2
    (ev,) = [e for e in events_of(tl_app, tl.c.user.id) if e.type == "JournalEntryCreated"]
    assert ev.aggregate_type == "journal_entry" and ev.aggregate_id == r.json["id"] and ev.aggregate_version == 1
    assert ev.payload["entry"] == r.json
