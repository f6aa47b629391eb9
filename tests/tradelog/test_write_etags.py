"""Writes that answer a composite (``{fill, position}``, ``{settlement, position}``,
``{from, to, roll}``, ``{order, position}``) still carry ``ETag: "<version>"`` of the aggregate
they changed, like PATCH does, and the OpenAPI document says so (the breaker found fills
answering without one although the position's version had changed)."""
from __future__ import annotations

from tests.tradelog.conftest import key, opt


def test_fill_settle_and_roll_answer_the_positions_etag_usable_as_if_match(tl):
    p = tl.create([opt("2025-05-16", 50, "put", -3)], symbol="XYZ", underlying="XYZ")
    assert p["version"] == 1
    leg = p["legs"][0]["id"]
    body = {"leg_id": leg, "price": "1.50", "quantity": -3, "fees": "1.95", "occurred_at": "2025-05-01T15:00:00Z"}
    idem = key()
    r = tl.c.post(f"/api/positions/{p['id']}/fills", json=body, idem=idem)
    assert r.status_code == 201, r.json
    # the first fill opens the position: version 1 -> 2
    assert r.json["position"]["version"] == 2 and r.headers["ETag"] == '"2"'
    assert tl.get(p["id"])["version"] == 2
    replay = tl.c.post(f"/api/positions/{p['id']}/fills", json=body, idem=idem)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.headers["ETag"] == '"2"'
    roll = tl.c.post(f"/api/positions/{p['id']}/roll", json={
        "occurred_at": "2025-05-15T15:00:00Z", "close": [{"leg_id": leg, "price": "0.60", "fees": "1.30"}],
        "open": [{**opt("2025-06-20", 48, "put", -2), "price": "1.40", "fees": "1.30"}]},
        headers={"If-Match": r.headers["ETag"]}, idem=key())
    assert roll.status_code == 201, roll.json
    assert roll.headers["ETag"] == f'"{roll.json["from"]["version"]}"' and roll.json["from"]["version"] > 2
    p2 = roll.json["to"]
    a = tl.c.post(f"/api/positions/{p2['id']}/legs/{p2['legs'][0]['id']}/settle",
                  json={"kind": "assignment", "settlement_value": "46.50"}, if_match=p2["version"], idem=key())
    assert a.status_code == 201, a.json
    assert a.headers["ETag"] == f'"{a.json["position"]["version"]}"' and a.json["position"]["version"] > p2["version"]
    assert tl.get(p2["id"])["version"] == a.json["position"]["version"]


def test_executing_an_order_answers_the_orders_etag(tl):
    r = tl.c.post("/api/orders", json={"position_template": {"symbol": "XYZ", "legs": [
        {"instrument_type": "stock", "quantity": 10}]}, "limit_price": "100.00"}, idem=key())
    assert r.status_code == 201 and r.headers["ETag"] == f'"{r.json["version"]}"'
    e = tl.c.post(f"/api/orders/{r.json['id']}/execute", json={}, idem=key())
    assert e.status_code == 201, e.json
    assert e.json["order"]["version"] > r.json["version"] and e.headers["ETag"] == f'"{e.json["order"]["version"]}"'


def test_openapi_documents_the_etag_of_every_versioned_write(tl_app):
    spec = tl_app.test_client().get("/openapi.json").json
    for path, method in [("/api/positions/{position_id}/fills", "post"),
                         ("/api/positions/{position_id}/legs/{leg_id}/settle", "post"),
                         ("/api/positions/{position_id}/roll", "post"),
                         ("/api/positions/{position_id}", "patch"),
                         ("/api/orders/{order_id}/execute", "post")]:
        op = spec["paths"][path][method]
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert ok, (path, method)
        for status in ok:
            assert "ETag" in op["responses"][status].get("headers", {}), (path, method, status)
