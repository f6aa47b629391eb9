"""Templates over HTTP: strike relative to ATM, ``use`` (rounding, expiration, use_count),
share codes and what they expose (seed section 9 item 5)."""
from __future__ import annotations

import re

from tests.riskgraph.helpers import API, events

TEMPLATE = {"name": "7d call fly", "description": "mine", "symbol": "SPX", "strategy": "butterfly", "side": "call",
            "strike_offset": -10, "width": 20, "dte_target": 7, "debit_estimate": "2.40"}


def make(client, **over):
    r = client.post(f"{API}/templates", json={**TEMPLATE, **over})
    assert r.status_code == 201, r.json
    return r.json


def test_use_rounds_to_the_strike_increment_and_counts(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    t = make(a)
    assert t["use_count"] == 0 and t["share_code"] is None and t["is_public"] is False
    # SPX: increment 5. 6003 / 5 = 1200.6 -> 1201 x 5 = 6005, offset -10 -> 5995
    r = a.post(f"{API}/templates/{t['id']}/use", json={"spot": "6003", "date": "2031-01-03"})
    assert r.status_code == 201, r.json
    s = r.json
    assert s["strike"] == "5995.0000" and s["strategy"] == "butterfly" and s["width"] == 20 and s["side"] == "call"
    assert s["expiration"] == "2031-01-10" and s["dte"] == 7 and s["debit"] == "2.4000" and s["label"] == "7d call fly"
    # halves round up: 6002.5 / 5 = 1200.5 -> 1201
    s = a.post(f"{API}/templates/{t['id']}/use", json={"spot": 6002.5, "date": "2031-01-03", "debit": "3"}).json
    assert s["strike"] == "5995.0000" and s["debit"] == "3.0000"
    # 6002.49 -> 1200.498 -> 1200 x 5 = 6000 - 10
    assert a.post(f"{API}/templates/{t['id']}/use", json={"spot": "6002.49"}).json["strike"] == "5990.0000"
    assert [x["use_count"] for x in a.get(f"{API}/templates").json] == [3]
    assert len(a.get(f"{API}/strategies").json) == 3
    v = a.get(f"{API}/strategies/{s['id']}/versions").json
    assert v[0]["change_type"] == "created" and "template" in v[0]["change_reason"]
    assert len(events(app, a.user.id, types={"StrategyAdded"})) == 3


def test_use_other_symbols_weekends_and_expiration_override(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    spy = make(a, symbol="SPY", strategy="single", width=None, strike_offset=2, dte_target=1)
    # SPY: increment 1. 601.49 -> 601 + 2. Friday + 1 day = Saturday -> Monday
    s = a.post(f"{API}/templates/{spy['id']}/use", json={"spot": "601.49", "date": "2031-01-10"}).json
    assert s["strike"] == "603.0000" and s["expiration"] == "2031-01-13" and s["dte"] == 3 and s["symbol"] == "SPY"
    other = make(a, symbol="XYZ", strategy="vertical", side="put", strike_offset=0, width=5)
    s = a.post(f"{API}/templates/{other['id']}/use",
               json={"spot": "123.5", "date": "2031-01-03", "expiration": "2031-01-17"}).json
    assert s["strike"] == "124.0000" and s["expiration"] == "2031-01-17" and s["dte"] == 14
    r = a.post(f"{API}/templates/{other['id']}/use", json={"spot": "10", "date": "2031-01-03", "expiration": "2031-01-02"})
    assert r.status_code == 422 and "expiration" in r.json["errors"]["json"]
    r = a.post(f"{API}/templates/{other['id']}/use", json={"spot": 0})
    assert r.status_code == 422 and "spot" in r.json["errors"]["json"]
    low = make(a, symbol="SPY", strategy="single", width=None, strike_offset=-50)
    r = a.post(f"{API}/templates/{low['id']}/use", json={"spot": "20"})
    assert r.status_code == 422 and "spot" in r.json["errors"]["json"]


def test_template_validation(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    for over, field in (({"name": ""}, "name"), ({"strategy": "vertical", "width": None}, "width"),
                        ({"dte_target": -1}, "dte_target"), ({"side": "both"}, "side"),
                        ({"debit_estimate": "abc"}, "debit_estimate")):
        r = a.post(f"{API}/templates", json={**TEMPLATE, **over})
        assert r.status_code == 422 and field in r.json["errors"]["json"], (over, r.json)


def test_share_code_is_unguessable_and_exposes_only_the_template(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a, b = new_client(app), new_client(app)
    t = make(a)
    r = a.post(f"{API}/templates/{t['id']}/share")
    assert r.status_code == 200
    code = r.json["share_code"]
    # 12 random bytes, URL-safe base64: 16 characters, 96 bits of entropy
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", code)
    assert a.post(f"{API}/templates/{t['id']}/share").json["share_code"] == code  # stable
    codes = {a.post(f"{API}/templates/{make(a, name=f't{i}')['id']}/share").json["share_code"] for i in range(20)}
    assert len(codes) == 20 and code not in codes

    shared = b.get(f"{API}/templates/shared/{code}")
    assert shared.status_code == 200
    assert shared.json == {"share_code": code, "name": "7d call fly", "description": "mine", "symbol": "SPX",
                           "strategy": "butterfly", "side": "call", "strike_offset": -10, "width": 20,
                           "dte_target": 7, "debit_estimate": "2.4000", "use_count": 0}
    assert "user_id" not in str(shared.json) and t["id"] not in str(shared.json)
    near = code[:-1] + ("y" if code[-1] == "x" else "x")  # one character off (never the code itself)
    assert b.get(f"{API}/templates/shared/{near}").status_code in (404,)
    assert b.get(f"{API}/templates/shared/nope").status_code == 404
    # signed-in only
    assert app.test_client().get(f"{API}/templates/shared/{code}").status_code == 401


def test_another_user_imports_a_shared_template(app_factory, new_client):
    """Seed section 9 item 5: create a template, share it, import it as another user."""
    app = app_factory(["riskgraph"])
    a, b = new_client(app), new_client(app)
    t = make(a)
    code = a.post(f"{API}/templates/{t['id']}/share").json["share_code"]
    copy = b.post(f"{API}/templates/shared/{code}/copy")
    assert copy.status_code == 201 and copy.json["id"] != t["id"] and copy.json["use_count"] == 0
    assert copy.json["share_code"] is None and copy.json["name"] == t["name"]
    assert [x["id"] for x in b.get(f"{API}/templates").json] == [copy.json["id"]]
    s = b.post(f"{API}/templates/{copy.json['id']}/use", json={"spot": "6000", "date": "2031-01-03"})
    assert s.status_code == 201 and s.json["strike"] == "5990.0000"
    s = b.post(f"{API}/templates/shared/{code}/use", json={"spot": "6000", "date": "2031-01-03"})
    assert s.status_code == 201
    assert len(b.get(f"{API}/strategies").json) == 2
    assert a.get(f"{API}/strategies").json == []
    assert a.get(f"{API}/templates").json[0]["use_count"] == 1


def test_private_templates_are_isolated(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a, b = new_client(app), new_client(app)
    t = make(a)
    assert b.get(f"{API}/templates").json == []
    assert b.post(f"{API}/templates/{t['id']}/use", json={"spot": "6000"}).status_code == 404
    assert b.post(f"{API}/templates/{t['id']}/share").status_code == 404
    assert a.get(f"{API}/templates").json[0]["share_code"] is None
    assert a.get(f"{API}/templates").json[0]["use_count"] == 0
    assert b.get(f"{API}/strategies").json == []
