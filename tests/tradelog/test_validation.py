"""Malformed input, wrong types and another user's ids are clear 4xx errors naming the
field (never a 500); user B sees none of user A's resources."""
from __future__ import annotations

from decimal import Decimal

import pytest

from tests.tradelog.conftest import TL, day, key, opt

OPT = opt(day(20), 6100, "call", 1)


def leg(**kw):
    return {**OPT, **kw}


BAD_POSITIONS = [
    ("strike on a stock leg", [{"instrument_type": "stock", "quantity": 10, "strike": "100"}], "strike"),
    ("right on a stock leg", [{"instrument_type": "stock", "quantity": 10, "right": "call"}], "right"),
    ("expiry on a stock leg", [{"instrument_type": "stock", "quantity": 10, "expiry": day(3)}], "expiry"),
    ("quantity 0", [leg(quantity=0)], "quantity"),
    ("unknown right", [leg(right="straddle")], "right"),
    ("unknown instrument", [leg(instrument_type="bond")], "instrument_type"),
    ("option without strike", [{k: v for k, v in OPT.items() if k != "strike"}], "strike"),
    ("option without expiry", [{k: v for k, v in OPT.items() if k != "expiry"}], "expiry"),
    ("negative strike", [leg(strike="-5")], "strike"),
    ("quantity as a string", [leg(quantity="1")], "quantity"),
    ("fractional quantity", [leg(quantity=1.5)], "quantity"),
    ("strike not a number", [leg(strike="abc")], "strike"),
    ("strike NaN", [leg(strike="NaN")], "strike"),
    ("expiry not a date", [leg(expiry="21/02/2025")], "expiry"),
    ("future without expiry", [{"instrument_type": "future", "quantity": 1}], "expiry"),
    ("huge quantity", [leg(quantity=10**9)], "quantity"),
]


@pytest.mark.parametrize("why,legs,field", BAD_POSITIONS, ids=[b[0] for b in BAD_POSITIONS])
def test_malformed_legs_are_422_naming_the_field(tl, why, legs, field):
    r = tl.c.post("/api/positions", json={"symbol": "SPX", "legs": legs}, idem=key())
    assert r.status_code == 422, (why, r.json)
    assert field in r.json["errors"]["json"]["legs"]["0"], r.json


@pytest.mark.parametrize("body,field", [
    ({}, "symbol"),
    ({"symbol": ""}, "symbol"),
    ({"symbol": 5}, "symbol"),
    ({"symbol": "SPX", "tags": "x"}, "tags"),
    ({"symbol": "SPX", "legs": {"a": 1}}, "legs"),
    ({"symbol": "SPX", "status": "open"}, "status"),  # unknown field
])
def test_wrong_types_on_create(tl, body, field):
    r = tl.c.post("/api/positions", json=body, idem=key())
    assert r.status_code == 422 and field in r.json["errors"]["json"], r.json


def test_malformed_json_is_400(tl):
    r = tl.c.post("/api/positions", data="{not json", headers={"Content-Type": "application/json"}, idem=key())
    assert r.status_code == 400


def test_bad_fills_patches_queries_and_orders(tl):
    p = tl.create([OPT])
    other = tl.create([OPT])
    pid, leg_id = p["id"], p["legs"][0]["id"]
    base = {"leg_id": leg_id, "price": "1", "quantity": 1, "occurred_at": "2025-02-05T10:30:00Z"}
    cases = [
        ({**base, "quantity": 0}, "quantity"),
        ({**base, "price": "-1"}, "price"),
        ({**base, "price": "1e20"}, "price"),
        ({**base, "fees": "-1"}, "fees"),
        ({**base, "occurred_at": "soon"}, "occurred_at"),
        ({k: v for k, v in base.items() if k != "occurred_at"}, "occurred_at"),
        ({**base, "leg_id": other["legs"][0]["id"]}, "leg_id"),
    ]
    for body, field in cases:
        r = tl.c.post(f"/api/positions/{pid}/fills", json=body, idem=key())
        assert r.status_code == 422 and field in r.json["errors"]["json"], (body, r.json)
    for body, field in [({}, "_schema"), ({"update_legs": [{"id": "x" * 36, "quantity": 2}]}, "update_legs"),
                        ({"add_legs": [leg(quantity=0)]}, "add_legs"), ({"tags": [1]}, "tags")]:
        r = tl.c.patch(f"/api/positions/{pid}", json=body, if_match=1, idem=key())
        assert r.status_code == 422 and field in r.json["errors"]["json"], (body, r.json)
    for qs, field in [("status=done", "status"), ("page_size=0", "page_size"), ("page=abc", "page")]:
        r = tl.c.get(f"/api/positions?{qs}")
        assert r.status_code == 422 and field in r.json["errors"]["query"], (qs, r.json)
    r = tl.c.get("/api/journal_entries")
    assert r.status_code == 422 and "position_id" in r.json["errors"]["query"]
    r = tl.c.post("/api/journal_entries", json={"position_id": pid, "object_of_reflection": "  ", "phase": "entry"},
                  idem=key())
    assert r.status_code == 422 and "object_of_reflection" in r.json["errors"]["json"]
    r = tl.c.post("/api/journal_entries", json={"position_id": pid, "phase": "later"}, idem=key())
    assert r.status_code == 422 and {"object_of_reflection", "phase"} <= set(r.json["errors"]["json"])


def order_body(legs, **kw):
    return {"position_template": {"symbol": "SPX", "legs": legs}, "limit_price": "2.00", **kw}


@pytest.mark.parametrize("body,path", [
    (order_body([leg(expiry=day(-1))]), ["position_template", "legs", "0", "expiry"]),
    (order_body([leg(quantity=0)]), ["position_template", "legs", "0", "quantity"]),
    (order_body([leg(right="both")]), ["position_template", "legs", "0", "right"]),
    (order_body([{"instrument_type": "stock", "quantity": 1, "strike": "5"}]), ["position_template", "legs", "0", "strike"]),
    (order_body([]), ["position_template", "legs"]),
    (order_body([OPT], limit_price=None), ["limit_price"]),
    (order_body([OPT], limit_price="-2.00"), ["limit_price"]),
    (order_body([OPT], order_type="stop"), ["order_type"]),
    (order_body([OPT], order_type="market"), ["limit_price"]),
    ({"limit_price": "1"}, ["position_template"]),
])
def test_malformed_orders_are_422_naming_the_field(tl, body, path):
    r = tl.c.post("/api/orders", json=body, idem=key())
    assert r.status_code == 422, r.json
    node = r.json["errors"]["json"]
    for part in path:
        assert part in node, (path, r.json)
        node = node[part]


def test_another_users_ids_are_404_on_every_route(tl_app, tl, new_client):
    a = tl
    p = a.create([OPT])
    a.fill(p["id"], p["legs"][0]["id"], "1", 1)
    o = a.c.post("/api/orders", json=order_body([OPT]), idem=key()).json
    a.c.post("/api/journal_entries", json={"position_id": p["id"], "object_of_reflection": "x", "phase": "setup"},
             idem=key())
    b = TL(new_client(tl_app))
    pid, oid = p["id"], o["id"]
    fill = {"leg_id": p["legs"][0]["id"], "price": "1", "quantity": 1, "occurred_at": "2025-02-05T10:30:00Z"}
    calls = [
        b.c.get(f"/api/positions/{pid}"),
        b.c.get(f"/api/positions/{pid}", query_string={"as_of": "2030-01-01T00:00:00Z"}),
        b.c.patch(f"/api/positions/{pid}", json={"tags": ["mine"]}, if_match=2, idem=key()),
        b.c.post(f"/api/positions/{pid}/fills", json=fill, idem=key()),
        b.c.post(f"/api/positions/{pid}/close", json={}, if_match=2, idem=key()),
        b.c.get(f"/api/positions/{pid}/snapshot"),
        b.c.get(f"/api/positions/{pid}/events"),
        b.c.post(f"/api/positions/{pid}/risk-artifact", json={"artifact_id": "a", "computed_at": "2025-01-01T00:00:00Z"},
                 idem=key()),
        b.c.get(f"/api/positions/{pid}/risk-artifact"),
        b.c.post("/api/journal_entries", json={"position_id": pid, "object_of_reflection": "x", "phase": "setup"},
                 idem=key()),
        b.c.get(f"/api/journal_entries?position_id={pid}"),
        b.c.get(f"/api/orders/{oid}"),
        b.c.delete(f"/api/orders/{oid}", if_match=1, idem=key()),
        b.c.post(f"/api/orders/{oid}/execute", json={"fill_price": "2"}, idem=key()),
    ]
    assert [r.status_code for r in calls] == [404] * len(calls), [(r.request.path, r.status_code) for r in calls]
    assert b.c.get("/api/positions").json == [] and b.c.get("/api/orders/active").json == []
    assert b.c.get("/api/tradelog/stats").json["overall"]["closed_positions"] == 0
    # and A's things are untouched
    assert a.get(pid)["version"] == 2 and a.c.get(f"/api/orders/{oid}").json["status"] == "pending"
    assert len(a.c.get(f"/api/journal_entries?position_id={pid}").json) == 1


def test_unknown_ids_are_404(tl):
    assert tl.c.get("/api/positions/not-a-uuid").status_code == 404
    assert tl.c.get("/api/positions/" + "0" * 36).status_code == 404
    assert tl.c.post("/api/orders/" + "0" * 36 + "/execute", json={}, idem=key()).status_code == 404


def test_extreme_but_valid_values_are_stored_not_500(tl):
    p = tl.create([{"instrument_type": "stock", "quantity": 1_000_000, "multiplier": 10_000}], symbol="BIG")
    leg_id = p["legs"][0]["id"]
    tl.fill(p["id"], leg_id, "0.0001", 1_000_000, fees="10000000")
    tl.fill(p["id"], leg_id, "10000000", -1_000_000, fees="10000000")
    closed = tl.close(p["id"])
    # (10,000,000 - 0.0001) * 1,000,000 * 10,000 = 1e17 - 1e6; minus 20,000,000 fees
    assert Decimal(closed["realized_pnl"]) == Decimal("99999999999000000") - Decimal("20000000")
    for body, field in [({"leg_id": leg_id, "price": "10000000.01", "quantity": 1, "occurred_at": "2025-01-01"}, "price"),
                        ({"leg_id": leg_id, "price": "1", "quantity": 1, "occurred_at": "0001-01-01T00:00:00+00:01"},
                         "occurred_at")]:
        r = tl.c.post(f"/api/positions/{p['id']}/fills", json=body, idem=key())
        assert r.status_code in (409, 422)
    r = tl.c.get(f"/api/positions/{p['id']}", query_string={"as_of": "0001-01-01T00:00:00+00:01"})
    assert r.status_code == 422 and "as_of" in r.json["errors"]["query"]
