"""Orders: create, list active, cancel (If-Match), execute (veto hook first, then position +
fills atomically), and the illegal transitions."""
from __future__ import annotations

from tests.tradelog.conftest import day, dte_of, events_of, key, opt


def order(c, legs, limit="24.00", order_type="limit", **extra):
    body = {"position_template": {"symbol": "SPX", "underlying": "I:SPX", "legs": legs, **extra},
            "order_type": order_type, "limit_price": limit}
    r = c.post("/api/orders", json=body, idem=key())
    assert r.status_code == 201, r.json
    return r.json


def test_execute_single_leg_creates_position_and_fill_with_slippage(tl_app, tl):
    o = order(tl.c, [opt(day(14), 6100, "call", 1)], limit="24.00", tags=["breakout"])
    assert o["status"] == "pending" and o["version"] == 1 and o["limit_price"] == "24.0000"
    assert o["position_template"]["legs"][0]["multiplier"] == 100
    assert [x["id"] for x in tl.c.get("/api/orders/active").json] == [o["id"]]
    r = tl.c.post(f"/api/orders/{o['id']}/execute", json={"fill_price": "24.30", "fees": "0.65",
                                                          "occurred_at": "2025-02-05T10:30:00Z"}, idem=key())
    assert r.status_code == 201, r.json
    filled, pos = r.json["order"], r.json["position"]
    assert filled["status"] == "filled" and filled["position_id"] == pos["id"] and filled["version"] == 2
    assert filled["fill_price"] == "24.3000" and filled["slippage"] == "0.3000"
    assert pos["status"] == "open" and pos["tags"] == ["breakout"] and pos["source_order_id"] == o["id"]
    snap = tl.snapshot(pos["id"])
    assert [(f["price"], f["quantity"], f["fees"]) for f in snap["fills"]] == [("24.3000", 1, "0.6500")]
    assert snap["metadata"]["net_debit"] == "2430.0000"
    assert tl.c.get("/api/orders/active").json == []
    types = [e.type for e in events_of(tl_app, tl.c.user.id)]
    assert types == ["OrderCreated", "PositionCreated", "FillRecorded", "OrderFilled"]
    ev = events_of(tl_app, tl.c.user.id, o["id"])[-1]
    assert ev.aggregate_type == "order" and ev.aggregate_version == 2
    assert ev.payload == {"order_id": o["id"], "position_id": pos["id"], "limit_price": "24.0000",
                          "fill_price": "24.3000", "slippage": "0.3000", "filled_at": "2025-02-05T10:30:00.000Z",
                          "reduces_position": False}
    fill_ev = [e for e in events_of(tl_app, tl.c.user.id) if e.type == "FillRecorded"][0]
    assert fill_ev.payload["slippage"] == "0.3000"
    again = tl.c.post(f"/api/orders/{o['id']}/execute", json={}, idem=key())
    assert again.status_code == 409 and again.json["state"] == "filled" and "filled" in again.json["message"]


def test_credit_order_fills_at_its_limit_by_default(tl):
    o = order(tl.c, [opt(day(14), 6100, "call", -1)], limit="-12.50")
    r = tl.c.post(f"/api/orders/{o['id']}/execute", idem=key())
    assert r.status_code == 201, r.json
    assert r.json["order"]["slippage"] == "0.0000"
    snap = tl.snapshot(r.json["position"]["id"])
    assert [(f["price"], f["quantity"]) for f in snap["fills"]] == [("12.5000", -1)]
    assert snap["metadata"]["net_debit"] == "-1250.0000"


def test_execute_iron_condor_with_leg_prices(tl_app, tl):
    exp = day(30)
    legs = [opt(exp, 5700, "put", 2), opt(exp, 5750, "put", -2), opt(exp, 6250, "call", -2), opt(exp, 6300, "call", 2)]
    o = order(tl.c, legs, limit="-2.60")
    need = tl.c.post(f"/api/orders/{o['id']}/execute", json={}, idem=key())
    assert need.status_code == 422 and "leg_prices" in need.json["errors"]["json"]
    wrong = tl.c.post(f"/api/orders/{o['id']}/execute", json={"leg_prices": ["1"]}, idem=key())
    assert wrong.status_code == 422 and "leg_prices" in wrong.json["errors"]["json"]
    r = tl.c.post(f"/api/orders/{o['id']}/execute", json={"leg_prices": ["1.10", "2.30", "2.00", "0.70"]}, idem=key())
    assert r.status_code == 201, r.json
    # net per condor: 1.10 - 2.30 - 2.00 + 0.70 = -2.50 (a 2.50 credit, 0.10 less than asked)
    assert r.json["order"]["fill_price"] == "-2.5000" and r.json["order"]["slippage"] == "0.1000"
    pos = r.json["position"]
    assert pos["version"] == 5  # created + 4 fills
    m = tl.snapshot(pos["id"])["metadata"]
    # credit 500 is the max profit; max loss = wing 50 * 2 * 100 - 500 = -9500 (a P&L)
    assert {k: m[k] for k in ("derived_strategy", "net_debit", "fees", "dte", "max_profit", "max_loss",
                              "realized_pnl")} == {
        "derived_strategy": "iron_condor", "net_debit": "-500.0000", "fees": "0.0000", "dte": dte_of(exp),
        "max_profit": "500.0000", "max_loss": "-9500.0000", "realized_pnl": "0.0000"}
    slips = [e.payload["slippage"] for e in events_of(tl_app, tl.c.user.id, pos["id"]) if e.type == "FillRecorded"]
    assert slips == ["0.1000", "0.0000", "0.0000", "0.0000"]


def test_market_order_needs_a_fill_price(tl):
    o = order(tl.c, [opt(day(7), 6100, "put", 1)], limit=None, order_type="market")
    r = tl.c.post(f"/api/orders/{o['id']}/execute", json={}, idem=key())
    assert r.status_code == 422 and "fill_price" in r.json["errors"]["json"]
    r = tl.c.post(f"/api/orders/{o['id']}/execute", json={"fill_price": "3.20"}, idem=key())
    assert r.status_code == 201 and r.json["order"]["slippage"] is None


def test_cancel_needs_if_match_and_a_cancelled_order_cannot_execute(tl_app, tl):
    o = order(tl.c, [opt(day(14), 6100, "call", 1)])
    assert tl.c.delete(f"/api/orders/{o['id']}", idem=key()).status_code == 428
    stale = tl.c.delete(f"/api/orders/{o['id']}", if_match=7, idem=key())
    assert stale.status_code == 409 and stale.json["current_version"] == 1
    r = tl.c.delete(f"/api/orders/{o['id']}", if_match=1, idem=key())
    assert r.status_code == 200 and r.json["status"] == "cancelled" and r.json["version"] == 2
    assert tl.c.get("/api/orders/active").json == []
    ex = tl.c.post(f"/api/orders/{o['id']}/execute", json={}, idem=key())
    assert ex.status_code == 409 and ex.json["state"] == "cancelled" and "cancelled" in ex.json["message"]
    again = tl.c.delete(f"/api/orders/{o['id']}", if_match=2, idem=key())
    assert again.status_code == 409 and again.json["state"] == "cancelled"
    assert [e.type for e in events_of(tl_app, tl.c.user.id)] == ["OrderCreated", "OrderCancelled"]
    assert tl.c.get("/api/positions").json == []


def test_a_veto_stops_execution_and_writes_nothing(app_factory, new_client):
    app = app_factory(["tradelog", "tests.plugins.notes.plugin"], NOTES_VETO=True)
    c = new_client(app)
    o = order(c, [opt(day(14), 6100, "call", 1)])
    before = len(events_of(app, c.user.id))
    r = c.post(f"/api/orders/{o['id']}/execute", json={"fill_price": "24"}, idem=key())
    assert r.status_code == 403 and r.json["code"] == "order_vetoed"
    assert "notes_veto" in r.json["message"]
    assert r.json["vetoes"] == [{"source": "notes_veto", "message": "notes says no", "detail": {"order": o["id"]}}]
    assert c.get(f"/api/orders/{o['id']}").json["status"] == "pending"
    assert c.get("/api/positions").json == []
    assert len(events_of(app, c.user.id)) == before


def test_the_seed_clients_bodyless_execute_and_close(tl):
    """The seed's client POSTs execute and close with no body (and a bare If-Match)."""
    o = order(tl.c, [{"instrument_type": "stock", "quantity": 10}], limit="100")
    r = tl.c.http.post(f"/api/orders/{o['id']}/execute", headers={"Authorization": f"Bearer {tl.c.token}"})
    assert r.status_code == 201, r.json
    pid = r.json["position"]["id"]
    tl.fill(pid, r.json["position"]["legs"][0]["id"], "101", -10, at=r.json["order"]["filled_at"])
    r = tl.c.http.post(f"/api/positions/{pid}/close", headers={"Authorization": f"Bearer {tl.c.token}", "If-Match": "3"})
    assert r.status_code == 200 and r.json["realized_pnl"] == "10.0000"


def test_event_catalogue_lists_the_tradelog_events(tl):
    doc = tl.c.get("/asyncapi.json").json
    text = str(doc)
    for name in ("PositionCreated", "FillRecorded", "PositionAdjusted", "PositionClosed", "OrderCreated",
                 "OrderCancelled", "OrderFilled", "RiskArtifactLinked"):
        assert name in text
    assert "tradelog.events" in doc["channels"]
