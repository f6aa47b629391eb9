"""Rolls (atomic: close some legs, open others in a new position ``rolled_from`` the old
one), the chain's cumulative figures, stats per chain, and orders that reduce or close a
position (``reduces_position``) — values by hand."""
from __future__ import annotations

from decimal import Decimal

from tests.tradelog.conftest import day, events_of, key, opt

EXP_AHEAD = day(30)


def ago(days: int) -> str:
    import datetime as dt
    t = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=days)
    return t.isoformat().replace("+00:00", "Z")


def roll(tl, pid, body, version=None):
    version = tl.get(pid)["version"] if version is None else version
    return tl.c.post(f"/api/positions/{pid}/roll", json=body, if_match=version, idem=key())


def test_roll_closes_and_opens_atomically_and_the_chain_adds_up(tl_app, tl):
    """Sell 2 XYZ May-16 50 puts @ 1.50 (fees 1.30). On May 15 roll: buy them back @ 0.80
    (fees 1.30) and sell 2 June-20 48 puts @ 1.40 (fees 1.30). On June 10 buy those back @
    0.20 (fees 1.30). By hand:
      P1 realized = 2 x (1.50 - 0.80) x 100 - 1.30 - 1.30 = 137.40 (closed by the roll)
      roll net credit = -0.80 x 2 x 100 + 1.40 x 2 x 100 = 120
      P2 realized = 2 x (1.40 - 0.20) x 100 - 2.60 = 237.40
      chain: net credit 140 + 240 = 380, fees 4 x 1.30 = 5.20,
      realized 137.40 + 237.40 = 374.80 (= 380 - 5.20)."""
    p1 = tl.create([opt("2025-05-16", 50, "put", -2)], symbol="XYZ", underlying="XYZ", tags=["wheel"])
    tl.fill(p1["id"], p1["legs"][0]["id"], "1.50", -2, fees="1.30", at="2025-05-01T15:00:00Z")
    r = roll(tl, p1["id"], {"occurred_at": "2025-05-15T15:00:00Z",
                            "close": [{"leg_id": p1["legs"][0]["id"], "price": "0.80", "fees": "1.30"}],
                            "open": [{**opt("2025-06-20", 48, "put", -2), "price": "1.40", "fees": "1.30"}]})
    assert r.status_code == 201, r.json
    old, new, info = r.json["from"], r.json["to"], r.json["roll"]
    assert old["status"] == "closed" and old["realized_pnl"] == "137.4000" and old["closed_at"] == "2025-05-15T15:00:00.000Z"
    assert new["rolled_from"] == p1["id"] and new["chain_id"] == p1["id"] and new["status"] == "open"
    assert new["tags"] == ["wheel"] and new["legs"][0]["open_quantity"] == -2
    assert (info["net_credit"], info["realized_pnl"], info["fees"]) == ("120.0000", "137.4000", "2.6000")
    types = [e.type for e in events_of(tl_app, tl.c.user.id)]
    assert types[-5:] == ["FillRecorded", "PositionClosed", "PositionCreated", "FillRecorded", "PositionRolled"]
    p2 = new["id"]
    tl.fill(p2, new["legs"][0]["id"], "0.20", 2, fees="1.30", at="2025-06-10T15:00:00Z")
    assert tl.close(p2, closed_at="2025-06-10T16:00:00Z")["realized_pnl"] == "237.4000"
    chain = tl.c.get(f"/api/positions/{p2}/chain").json
    assert chain["chain_id"] == p1["id"] and chain["rolls"] == 1 and chain["open"] is False
    assert [x["position_id"] for x in chain["positions"]] == [p1["id"], p2]
    assert [(x["net_credit"], x["cumulative_net_credit"], x["cumulative_realized_pnl"]) for x in chain["positions"]] == [
        ("140.0000", "140.0000", "137.4000"), ("240.0000", "380.0000", "374.8000")]
    assert (chain["net_credit"], chain["fees"], chain["realized_pnl"]) == ("380.0000", "5.2000", "374.8000")
    st = tl.c.get("/api/tradelog/stats?group_by=roll_chain").json
    assert st["group_by"] == "roll_chain"
    assert [(g["key"], g["closed_positions"], g["total_pnl"], g["wins"]) for g in st["groups"]] == [
        (p1["id"], 2, "374.8000", 2)]


def test_a_failed_roll_writes_nothing(tl_app, tl):
    """A roll whose new leg expires on a Saturday is 422 naming ``open.0.expiry``: the old
    position keeps its version and fills, no new position exists, no event was written."""
    p = tl.create([opt("2025-05-16", 50, "put", -1), opt("2025-05-16", 45, "put", 1)], symbol="XYZ", underlying="XYZ")
    short, long_ = p["legs"]
    tl.fill(p["id"], short["id"], "1.50", -1, at="2025-05-01T15:00:00Z")
    tl.fill(p["id"], long_["id"], "0.50", 1, at="2025-05-01T15:00:00Z")
    before = len(events_of(tl_app, tl.c.user.id))
    r = roll(tl, p["id"], {"occurred_at": "2025-05-15T15:00:00Z",
                           "close": [{"leg_id": short["id"], "price": "0.80"}],
                           "open": [{**opt("2025-06-21", 48, "put", -1), "price": "1.40"}]})
    assert r.status_code == 422 and "expiry" in r.json["errors"]["json"]["open"]["0"], r.json
    assert tl.get(p["id"])["version"] == 3 and len(tl.snapshot(p["id"])["fills"]) == 2
    assert len(tl.c.get("/api/positions").json) == 1
    assert len(events_of(tl_app, tl.c.user.id)) == before
    bad = roll(tl, p["id"], {"close": [{"leg_id": short["id"], "price": "0.80", "quantity": -1}],
                             "open": [{**opt("2025-06-20", 48, "put", -1), "price": "1.40"}]})
    assert bad.status_code == 422 and "quantity" in bad.json["errors"]["json"]["close"]["0"]
    stale = roll(tl, p["id"], {"close": [{"leg_id": short["id"], "price": "0.80"}],
                               "open": [{**opt("2025-06-20", 48, "put", -1), "price": "1.40"}]}, version=1)
    assert stale.status_code == 409
    # a partial roll: the long put stays, so the old position stays open
    r = roll(tl, p["id"], {"occurred_at": "2025-05-15T15:00:00Z", "close": [{"leg_id": short["id"], "price": "0.80"}],
                           "open": [{**opt("2025-06-20", 48, "put", -1), "price": "1.40"}]})
    assert r.status_code == 201 and r.json["from"]["status"] == "open"


def test_an_order_that_reduces_a_position_and_one_that_closes_it(tl_app, tl):
    """Long 3 XYZ 100 calls @ 2.00. An order to sell 1 of them executes into the
    position (``reduces_position`` true, the breaker hook sees it): realized (2.60 - 2.00) x
    100 = 60, 2 left. A second order selling 2 @ 3.00 closes it: +200 more, position closed
    at the fill time with realized 260. An order adding a leg does not reduce."""
    from plugins.tradelog import orders
    p = tl.create([opt(EXP_AHEAD, 100, "call", 3)], symbol="XYZ", underlying="XYZ")
    tl.fill(p["id"], p["legs"][0]["id"], "2.00", 3, at=ago(3))
    tpl = {"symbol": "XYZ", "underlying": "XYZ", "legs": [opt(EXP_AHEAD, 100, "call", -1)]}
    r = tl.c.post("/api/orders", json={"position_template": tpl, "limit_price": "-2.50", "position_id": p["id"]},
                  idem=key())
    assert r.status_code == 201, r.json
    assert r.json["reduces_position"] is True and r.json["position_id"] == p["id"]
    seen = []
    with tl_app.extensions["tradeloop"].db.transaction() as conn:
        done = orders.execute_order(conn, tl.c.user.id, r.json["id"],
                                    {"fill_price": Decimal("-2.60"), "occurred_at": _ts(ago(2))},
                                    lambda c, u, order: seen.append(order) or [])
    assert seen[0]["reduces_position"] is True and seen[0]["position_id"] == p["id"]
    assert done["position"]["id"] == p["id"] and done["position"]["legs"][0]["open_quantity"] == 2
    assert done["position"]["realized_pnl"] == Decimal("60.0000")
    filled = [e for e in events_of(tl_app, tl.c.user.id) if e.type == "OrderFilled"][-1]
    assert filled.payload["reduces_position"] is True
    r = tl.c.post("/api/orders", json={"position_template": {**tpl, "legs": [opt(EXP_AHEAD, 100, "call", -2)]},
                                       "limit_price": "-3.00", "position_id": p["id"]}, idem=key())
    at = ago(1)
    ex = tl.c.post(f"/api/orders/{r.json['id']}/execute", json={"occurred_at": at}, idem=key())
    assert ex.status_code == 201, ex.json
    assert ex.json["order"]["reduces_position"] is True
    assert ex.json["position"]["status"] == "closed" and ex.json["position"]["realized_pnl"] == "260.0000"
    assert ex.json["position"]["closed_at"] == at.replace("Z", ".000Z")
    q = tl.create([opt(EXP_AHEAD, 100, "call", 1)], symbol="XYZ", underlying="XYZ")
    tl.fill(q["id"], q["legs"][0]["id"], "2.00", 1, at=ago(3))
    add = tl.c.post("/api/orders", json={"position_template": {**tpl, "legs": [opt(EXP_AHEAD, 110, "call", -1)]},
                                         "limit_price": "-1.00", "position_id": q["id"]}, idem=key())
    assert add.status_code == 201 and add.json["reduces_position"] is False
    ex = tl.c.post(f"/api/orders/{add.json['id']}/execute", json={"occurred_at": ago(1)}, idem=key())
    assert ex.status_code == 201 and len(ex.json["position"]["legs"]) == 2
    wrong = tl.c.post("/api/orders", json={"position_template": {**tpl, "symbol": "ABC"}, "limit_price": "-1",
                                           "position_id": q["id"]}, idem=key())
    assert wrong.status_code == 422 and "position_template" in wrong.json["errors"]["json"]


def _ts(text):
    import datetime as dt
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
