"""Strategies over HTTP: CRUD, the version trail (every change_type), If-Match,
Idempotency-Key, import/export/reorder, user isolation, events and the SSE route
(seed "Risk Graph Service Layer" section 9 items 1, 2 and 6)."""
from __future__ import annotations

from tests.riskgraph.helpers import API, add, events, vertical


def test_tables_and_routes_exist_with_riskgraph_alone(app_factory, new_client):
    """Seed section 9 item 1 (tables created by the migration); tradelog disabled."""
    import sqlalchemy as sa
    app = app_factory(["riskgraph"])
    insp = sa.inspect(app.extensions["tradeloop"].db.engine)
    for t in ("risk_graph_strategies", "risk_graph_strategy_versions", "risk_graph_templates", "risk_artifacts",
              "rg_position_books"):
        assert insp.has_table(t), t
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert "/sse/risk-graph" in rules
    assert not any(r.startswith("/api/positions") for r in rules)  # tradelog is off
    a = new_client(app)
    assert a.get(f"{API}/strategies").json == []


def test_crud_versions_and_every_change_type(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    s = add(a, label="first")
    assert s["version"] == 1 and s["is_active"] and s["strike"] == "6000.0000" and s["debit"] == "3.5000"
    assert s["underlying"] == "I:SPX" and isinstance(s["added_at"], int)
    sid = s["id"]
    assert a.get(f"{API}/strategies/{sid}").headers["ETag"] == '"1"'

    r = a.patch(f"{API}/strategies/{sid}", json={"debit": "4.25", "change_reason": "filled better"}, if_match=1)
    assert r.status_code == 200 and r.json["version"] == 2 and r.json["debit"] == "4.2500"
    r = a.patch(f"{API}/strategies/{sid}", json={"visible": False}, if_match=2)
    assert r.json["version"] == 3 and r.json["visible"] is False
    r = a.patch(f"{API}/strategies/{sid}", json={"label": "renamed", "color": "#ff0000"}, if_match=3)
    assert r.json["version"] == 4
    r = a.delete(f"{API}/strategies/{sid}?change_reason=closed", if_match=4)
    assert r.status_code == 200 and r.json["is_active"] is False and r.json["version"] == 5

    assert a.get(f"{API}/strategies").json == []  # soft-deleted: not listed
    v = a.get(f"{API}/strategies/{sid}/versions").json
    assert [x["change_type"] for x in v] == ["created", "debit_updated", "visibility_toggled", "edited", "deleted"]
    assert [x["version"] for x in v] == [1, 2, 3, 4, 5]
    assert v[1]["change_reason"] == "filled better" and v[1]["debit"] == "4.2500"
    assert v[0]["debit"] == "3.5000"  # the old row is unchanged: immutable trail
    assert v[2]["visible"] is False and v[3]["label"] == "renamed" and v[4]["change_reason"] == "closed"
    assert v[3]["snapshot"]["color"] == "#ff0000" and v[0]["snapshot"]["label"] == "first"
    # a deleted strategy can't be changed again
    assert a.patch(f"{API}/strategies/{sid}", json={"label": "x"}, if_match=5).status_code == 409


def test_if_match_required_and_stale(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    sid = add(a)["id"]
    assert a.patch(f"{API}/strategies/{sid}", json={"debit": "1"}).status_code == 428
    assert a.delete(f"{API}/strategies/{sid}").status_code == 428
    assert a.patch(f"{API}/strategies/{sid}", json={"debit": "1"}, if_match=1).status_code == 200
    r = a.patch(f"{API}/strategies/{sid}", json={"debit": "2"}, if_match=1)
    assert r.status_code == 409 and r.json["current"]["version"] == 2 and r.json["current"]["debit"] == "1.0000"
    assert a.delete(f"{API}/strategies/{sid}", if_match=1).status_code == 409
    # bare form of the seed's client
    r = a.patch(f"{API}/strategies/{sid}", json={"visible": False}, headers={"If-Match": "2"})
    assert r.status_code == 200 and r.json["version"] == 3


def test_idempotency_key_on_create(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    r1 = a.post(f"{API}/strategies", json=vertical(), idem="create-1")
    r2 = a.post(f"{API}/strategies", json=vertical(), idem="create-1")
    assert r1.status_code == r2.status_code == 201 and r1.json["id"] == r2.json["id"]
    assert r2.headers.get("Idempotent-Replayed") == "true"
    assert len(a.get(f"{API}/strategies").json) == 1
    assert len(events(app, a.user.id, types={"StrategyAdded"})) == 1
    assert a.post(f"{API}/strategies", json=vertical(strike="6100"), idem="create-1").status_code == 422


def test_validation_names_fields(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    cases = [
        ({"strategy": "condor"}, "strategy"),
        ({"side": "straddle"}, "side"),
        ({"strike": "-5"}, "strike"),
        ({"width": None}, "width"),                      # a vertical needs a width
        ({"strategy": "butterfly", "width": 6000}, "width"),  # lower wing at 0
        ({"dte": -1}, "dte"),
        ({"debit": "-1"}, "debit"),
        ({"label": "x" * 101}, "label"),
        ({"expiration": "2031-02-30"}, "expiration"),
    ]
    for over, field in cases:
        r = a.post(f"{API}/strategies", json=vertical(**over))
        assert r.status_code == 422, (over, r.json)
        assert field in r.json["errors"]["json"], (over, r.json)
    sid = add(a)["id"]
    r = a.patch(f"{API}/strategies/{sid}", json={"width": None}, if_match=1)
    assert r.status_code == 422 and "width" in r.json["errors"]["json"]
    assert a.get(f"{API}/strategies/{'x' * 37}").status_code == 404


def test_user_isolation_on_every_strategy_route(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a, b = new_client(app), new_client(app)
    sid = add(a)["id"]
    assert b.get(f"{API}/strategies").json == []
    assert b.get(f"{API}/strategies/{sid}").status_code == 404
    assert b.get(f"{API}/strategies/{sid}/versions").status_code == 404
    assert b.get(f"{API}/strategies/{sid}/risk?spot=6000&iv=0.2").status_code == 404
    assert b.patch(f"{API}/strategies/{sid}", json={"debit": "9"}, if_match=1).status_code == 404
    assert b.delete(f"{API}/strategies/{sid}", if_match=1).status_code == 404
    assert b.post(f"{API}/strategies/reorder", json={"order": [{"id": sid, "sort_order": 9}]}).status_code == 404
    assert b.post(f"{API}/analyze", json={"spot": 6000, "iv": 0.2, "strategy_ids": [sid]}).status_code == 404
    assert b.get(f"{API}/strategies/export").json["strategies"] == []
    # nothing of A's changed
    s = a.get(f"{API}/strategies/{sid}").json
    assert s["version"] == 1 and s["debit"] == "3.5000" and s["sort_order"] == 0 and s["is_active"]
    assert not events(app, b.user.id)


def test_import_is_idempotent_and_export_round_trips(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a, b = new_client(app), new_client(app)
    items = [dict(vertical(label="one"), id="11111111-aaaa-4aaa-8aaa-%012d" % a.user.id),
             dict(vertical(strategy="single", width=None, strike="5950", side="put", label="two"),
                  id="22222222-aaaa-4aaa-8aaa-%012d" % a.user.id)]
    r = a.post(f"{API}/strategies/import", json={"strategies": items})
    assert r.status_code == 200 and (r.json["created"], r.json["updated"], r.json["unchanged"]) == (2, 0, 0)
    assert r.json["id_map"] == {i["id"]: i["id"] for i in items}
    r = a.post(f"{API}/strategies/import", json={"strategies": items})
    assert (r.json["created"], r.json["updated"], r.json["unchanged"]) == (0, 0, 2)
    assert len(a.get(f"{API}/strategies").json) == 2
    # a changed debit in the file updates that strategy (one version row)
    items[0]["debit"] = "4"
    r = a.post(f"{API}/strategies/import", json={"strategies": items})
    assert (r.json["created"], r.json["updated"], r.json["unchanged"]) == (0, 1, 1)
    v = a.get(f"{API}/strategies/{items[0]['id']}/versions").json
    assert [x["change_type"] for x in v] == ["created", "debit_updated"] and v[1]["change_reason"] == "import"

    exported = a.get(f"{API}/strategies/export").json
    assert exported["format"].startswith("tradeloop.riskgraph.strategies/")
    assert {s["label"] for s in exported["strategies"]} == {"one", "two"}
    # the export imports back into the same account unchanged
    r = a.post(f"{API}/strategies/import", json={"strategies": [_importable(s) for s in exported["strategies"]]})
    assert (r.json["created"], r.json["updated"], r.json["unchanged"]) == (0, 0, 2)
    # ... and into another account as new strategies with fresh ids, A's untouched
    r = b.post(f"{API}/strategies/import", json={"strategies": [_importable(s) for s in exported["strategies"]]})
    assert r.status_code == 200 and r.json["created"] == 2
    assert set(r.json["id_map"]) == {i["id"] for i in items}
    assert not set(r.json["id_map"].values()) & {i["id"] for i in items}
    b_list = b.get(f"{API}/strategies").json
    assert sorted((s["label"], s["strike"], s["debit"]) for s in b_list) == \
        sorted((s["label"], s["strike"], s["debit"]) for s in exported["strategies"])
    assert a.get(f"{API}/strategies/{items[0]['id']}").json["version"] == 2


def _importable(s):
    keep = ("id", "symbol", "underlying", "strategy", "side", "strike", "width", "dte", "expiration", "debit",
            "visible", "sort_order", "color", "label", "added_at")
    return {k: s[k] for k in keep}


def test_import_validation(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    dup = "33333333-aaaa-4aaa-8aaa-000000000000"
    r = a.post(f"{API}/strategies/import", json={"strategies": [dict(vertical(), id=dup), dict(vertical(), id=dup)]})
    assert r.status_code == 422 and "strategies" in r.json["errors"]["json"]
    r = a.post(f"{API}/strategies/import", json={"strategies": [vertical(), vertical(side="sideways")]})
    assert r.status_code == 422
    assert a.get(f"{API}/strategies").json == []  # nothing of a bad file is kept


def test_reorder_is_atomic(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a, b = new_client(app), new_client(app)
    s1, s2, s3 = (add(a, label=f"s{i}")["id"] for i in range(3))
    other = add(b)["id"]
    r = a.post(f"{API}/strategies/reorder", json={"order": [{"id": s1, "sort_order": 3}, {"id": s3, "sort_order": 1},
                                                             {"id": s2, "sort_order": 2}]})
    assert r.status_code == 200
    assert [s["id"] for s in r.json] == [s3, s2, s1]
    assert [s["id"] for s in a.get(f"{API}/strategies").json] == [s3, s2, s1]
    before = {s["id"]: (s["sort_order"], s["version"]) for s in a.get(f"{API}/strategies").json}
    for bad in ([{"id": s1, "sort_order": 9}, {"id": other, "sort_order": 8}],
                [{"id": s2, "sort_order": 9}, {"id": "44444444-aaaa-4aaa-8aaa-000000000000", "sort_order": 8}]):
        assert a.post(f"{API}/strategies/reorder", json={"order": bad}).status_code == 404
    r = a.post(f"{API}/strategies/reorder", json={"order": [{"id": s1, "sort_order": 1}, {"id": s1, "sort_order": 2}]})
    assert r.status_code == 422
    after = {s["id"]: (s["sort_order"], s["version"]) for s in a.get(f"{API}/strategies").json}
    assert after == before
    assert b.get(f"{API}/strategies/{other}").json["sort_order"] == 0


def test_events_carry_the_envelope(app_factory, new_client):
    """Seed section 3: strategy_added / updated / removed on the user's stream."""
    app = app_factory(["riskgraph"])
    a = new_client(app)
    sid = add(a)["id"]
    a.patch(f"{API}/strategies/{sid}", json={"visible": False}, if_match=1)
    a.delete(f"{API}/strategies/{sid}", if_match=2)
    evs = events(app, a.user.id)
    assert [e.type for e in evs] == ["StrategyAdded", "StrategyUpdated", "StrategyRemoved"]
    assert [e.aggregate_version for e in evs] == [1, 2, 3]
    assert all(e.aggregate_id == sid and e.aggregate_type == "risk_strategy" and e.user_id == a.user.id for e in evs)
    seqs = [e.event_seq for e in evs]
    assert seqs == sorted(seqs) and len(set(e.event_id for e in evs)) == 3
    assert evs[1].payload["change_type"] == "visibility_toggled"
    assert evs[1].payload["strategy"]["visible"] is False
    assert evs[2].payload["strategy"]["is_active"] is False
    d = evs[0].to_dict()
    for key in ("event_id", "event_seq", "type", "aggregate_type", "aggregate_id", "aggregate_version",
                "occurred_at", "recorded_at", "user_id", "schema_version", "payload"):
        assert key in d
    spec = a.get("/asyncapi.json").json
    assert "riskgraph.events" in str(spec) and "RiskArtifactComputed" in str(spec)


def test_sse_replays_strategy_events(app_factory, new_client):
    app = app_factory(["riskgraph"])
    a, b = new_client(app), new_client(app)
    sid = add(a)["id"]
    other = add(b)["id"]
    r = a.get("/sse/risk-graph?last_seq=0", buffered=False)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    text = ""
    for chunk in r.response:
        text += chunk.decode() if isinstance(chunk, bytes) else chunk
        if "StrategyAdded" in text:
            break
    r.close()
    assert sid in text and other not in text and "\nid: " in text
