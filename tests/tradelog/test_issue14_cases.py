"""The four cases of issue 14 that the trade log got wrong, each with its value by hand
(on SQLite and on MariaDB through the ``tl`` fixture)."""
from __future__ import annotations

import datetime as dt

from tests.tradelog.conftest import day, dte_of, events_of, key, opt

EXP = "2025-06-20"  # a Friday; XYZ options are PM-settled: 16:00 New York = 20:00 UTC (EDT)


def test_partial_close_sizes_what_is_open_and_realizes_what_was_bought_back(tl_app, tl):
    """Sell 6 puts (K 80, x100) @ 1.10, fees 3.90; buy back 2 @ 0.40, fees 1.30.

    By hand: open = -6 + 2 = -4 contracts.
    realized = 2 x (1.10 - 0.40) x 100 - 3.90 x 2/6 (the opening fees of the 2 closed)
               - 1.30 (the buy-back's own) = 140 - 1.30 - 1.30 = 137.40.
    What is open: a credit of 4 x 1.10 x 100 = 440 -> net debit -440; max profit 440 (the
    puts expire worthless); max loss = 440 - 80 x 100 x 4 = -31,560 (XYZ at 0), on 4
    contracts, not 6; fees still on the open lots 3.90 - 1.30 = 2.60."""
    p = tl.create([opt(day(30), 80, "put", -6)], symbol="XYZ", underlying="XYZ")
    leg = p["legs"][0]["id"]
    tl.fill(p["id"], leg, "1.10", -6, fees="3.90", at="2025-02-05T15:00:00Z")
    f = tl.fill(p["id"], leg, "0.40", 2, fees="1.30", at="2025-02-10T15:00:00Z")
    assert f["fill"]["realized_pnl"] == "137.4000"
    assert f["position"]["realized_pnl"] == "137.4000" and f["position"]["fees"] == "5.2000"
    assert f["position"]["legs"][0]["open_quantity"] == -4 and f["position"]["legs"][0]["quantity"] == -6
    s = tl.snapshot(p["id"])
    (sleg,) = s["legs"]
    assert (sleg["open_quantity"], sleg["cost_basis"], sleg["average_price"], sleg["open_fees"],
            sleg["realized_pnl"]) == (-4, "-440.0000", "1.100000", "2.6000", "137.4000")
    m = s["metadata"]
    assert (m["net_debit"], m["max_profit"], m["max_loss"], m["realized_pnl"], m["fees"], m["open_fees"]) == \
        ("-440.0000", "440.0000", "-31560.0000", "137.4000", "5.2000", "2.6000")
    ev = [e for e in events_of(tl_app, tl.c.user.id, p["id"]) if e.type == "FillRecorded"][-1]
    assert ev.payload["leg"] == {"leg_id": leg, "open_quantity": -4, "cost_basis": "-440.0000",
                                 "average_price": "1.100000", "realized_pnl": "137.4000"}
    assert ev.payload["fill"]["realized_pnl"] == "137.4000"


def test_assignment_closes_the_put_at_zero_and_delivers_shares_at_the_strike(tl_app, tl):
    """Sell 1 XYZ put K 50 @ 2.00 (fees 0.65); assigned at expiry.

    By hand: the put closes at 0 -> realized 2.00 x 100 - 0.65 = 199.35; 100 shares arrive
    at 50 -> a stock leg, cost basis 5,000. What is open is 100 shares: net debit 5,000,
    max loss -5,000 (XYZ at 0), max profit unbounded (null); the put no longer counts.
    Selling the shares at 52 later realizes (52 - 50) x 100 = 200: 399.35 in all."""
    p = tl.create([opt(EXP, 50, "put", -1)], symbol="XYZ", underlying="XYZ")
    put = p["legs"][0]["id"]
    f = tl.fill(p["id"], put, "2.00", -1, fees="0.65", at="2025-06-02T15:00:00Z")
    r = tl.c.post(f"/api/positions/{p['id']}/legs/{put}/settle", json={"kind": "assignment"},
                  if_match=f["position"]["version"], idem=key())
    assert r.status_code == 201, r.json
    st, pos = r.json["settlement"], r.json["position"]
    assert (st["kind"], st["settlement_type"], st["settlement_time"], st["quantity"], st["price"],
            st["delivered_quantity"]) == ("assignment", "physical", "PM", 1, "0.0000", 100)
    assert st["occurred_at"] == "2025-06-20T20:00:00.000Z"      # the settlement moment (PM, EDT)
    stock = next(leg for leg in pos["legs"] if leg["instrument_type"] == "stock")
    assert stock["id"] == st["delivered_leg_id"] and stock["source_leg_id"] == put
    assert (stock["quantity"], stock["open_quantity"]) == (100, 100)
    assert next(leg for leg in pos["legs"] if leg["id"] == put)["open_quantity"] == 0
    assert pos["realized_pnl"] == "199.3500"
    s = tl.snapshot(p["id"])
    by_leg = {leg["id"]: leg for leg in s["legs"]}
    assert by_leg[stock["id"]]["cost_basis"] == "5000.0000" and by_leg[stock["id"]]["average_price"] == "50.000000"
    m = s["metadata"]
    assert (m["derived_strategy"], m["net_debit"], m["max_profit"], m["max_loss"], m["realized_pnl"]) == \
        ("stock", "5000.0000", None, "-5000.0000", "199.3500")
    assert [(x["kind"], x["price"], x["quantity"]) for x in s["fills"][1:]] == [
        ("assignment", "0.0000", 1), ("delivery", "50.0000", 100)]
    (ev,) = [e for e in events_of(tl_app, tl.c.user.id, p["id"]) if e.type == "LegSettled"]
    assert ev.payload["settlement"]["kind"] == "assignment" and ev.payload["legs_added"][0]["id"] == stock["id"]
    assert ev.aggregate_version == pos["version"]
    tl.fill(p["id"], stock["id"], "52", -100, at="2025-06-23T15:00:00Z")
    closed = tl.close(p["id"], closed_at="2025-06-23T16:00:00Z")
    assert closed["realized_pnl"] == "399.3500" and closed["fees"] == "0.6500"


def test_an_option_is_alive_until_its_settlement_moment_not_midnight_utc(tl):
    """A long XYZ call expiring Friday 2025-06-20 (PM: 16:00 New York = 20:00 UTC).

    Closing at Friday 00:00 UTC (Thursday 20:00 in New York) is 409 position_not_flat: it
    is alive for another day. Closing after 20:00 UTC expires it worthless: realized =
    -3.00 x 100 - 0.65 = -300.65."""
    p = tl.create([opt(EXP, 100, "call", 1)], symbol="XYZ", underlying="XYZ")
    tl.fill(p["id"], p["legs"][0]["id"], "3.00", 1, fees="0.65", at="2025-06-02T15:00:00Z")
    early = tl.c.post(f"/api/positions/{p['id']}/close", json={"closed_at": "2025-06-20T00:00:00Z"},
                      if_match=2, idem=key())
    assert early.status_code == 409 and early.json["code"] == "position_not_flat"
    assert "2025-06-20T20:00:00" in early.json["message"]
    still = tl.c.post(f"/api/positions/{p['id']}/close", json={"closed_at": "2025-06-20T19:59:59Z"},
                      if_match=2, idem=key())
    assert still.status_code == 409
    closed = tl.close(p["id"], closed_at="2025-06-20T20:00:00Z")
    assert closed["status"] == "closed" and closed["realized_pnl"] == "-300.6500"
    fills = tl.snapshot(p["id"])["fills"]
    assert [(f["kind"], f["price"], f["occurred_at"]) for f in fills][-1] == \
        ("expiration", "0.0000", "2025-06-20T20:00:00.000Z")


def test_dte_counts_to_the_settlement_moment_in_new_york(tl):
    """Same call, seen from three moments (build_snapshot at a given time): Friday 00:00 UTC
    is Thursday in New York -> DTE 1; Friday 19:59 UTC -> DTE 0, still alive; Friday 20:00
    UTC -> settled: DTE 0 and no settlement moment ahead."""
    from plugins.tradelog import service
    p = tl.create([opt(EXP, 100, "call", 1)], symbol="XYZ", underlying="XYZ")
    tl.fill(p["id"], p["legs"][0]["id"], "3.00", 1, at="2025-06-02T15:00:00Z")
    with tl.c.app.extensions["tradeloop"].db.transaction() as conn:
        rep = service.get_position(conn, tl.c.user.id, p["id"])
        fills = service._fills(conn, p["id"])
    utc = dt.timezone.utc
    seen = [service.build_snapshot(rep, fills, dt.datetime(2025, 6, 20, h, m, tzinfo=utc))["metadata"]
            for h, m in ((0, 0), (19, 59), (20, 0))]
    assert [(x["dte"], x["settles_at"]) for x in seen] == [
        (1, dt.datetime(2025, 6, 20, 20, tzinfo=utc)), (0, dt.datetime(2025, 6, 20, 20, tzinfo=utc)), (0, None)]
    # and today, through the API: days from New York's date to the expiry
    q = tl.create([opt(day(10), 100, "call", 1)], symbol="XYZ", underlying="XYZ")
    tl.fill(q["id"], q["legs"][0]["id"], "3.00", 1)
    assert tl.snapshot(q["id"])["metadata"]["dte"] == dte_of(day(10))


def test_a_fill_past_flat_is_422_and_a_bigger_fill_sizes_the_risk(tl):
    """A 1-lot long call leg: selling 5 after buying 1 would carry it past flat -> 422 naming
    ``quantity``, nothing written. Buying 5 on it (the intent was 1) is what happened: the
    snapshot then sizes 5 contracts both in cash and in risk: net debit 5 x 2.00 x 100 =
    1,000 and max loss -1,000 (not 200)."""
    p = tl.create([opt(day(30), 100, "call", 1)], symbol="XYZ", underlying="XYZ")
    leg = p["legs"][0]["id"]
    tl.fill(p["id"], leg, "2.00", 1)
    over = tl.c.post(f"/api/positions/{p['id']}/fills", json={
        "leg_id": leg, "price": "2.50", "quantity": -5, "occurred_at": "2025-02-06T15:00:00Z"}, idem=key())
    assert over.status_code == 422 and "quantity" in over.json["errors"]["json"]
    assert "past flat" in over.json["errors"]["json"]["quantity"][0]
    assert tl.get(p["id"])["version"] == 2
    wrong_way = tl.create([opt(day(30), 100, "call", 1)], symbol="XYZ", underlying="XYZ")
    r = tl.c.post(f"/api/positions/{wrong_way['id']}/fills", json={
        "leg_id": wrong_way["legs"][0]["id"], "price": "2", "quantity": -1, "occurred_at": "2025-02-06T15:00:00Z"},
        idem=key())
    assert r.status_code == 422 and "quantity" in r.json["errors"]["json"]
    tl.fill(p["id"], leg, "2.00", 4)
    m = tl.snapshot(p["id"])["metadata"]
    assert (m["net_debit"], m["max_loss"]) == ("1000.0000", "-1000.0000")
    assert tl.snapshot(p["id"])["legs"][0]["open_quantity"] == 5
