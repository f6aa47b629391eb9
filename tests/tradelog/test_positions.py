"""Seed section 12 items 1-4 and 8 over HTTP, plus replay, as-of and state transitions."""
from __future__ import annotations

import json
import time

from tests.tradelog.conftest import day, dte_of, events_of, key, opt


def vertical(exp, qty=1):
    return [opt(exp, 6100, "call", qty), opt(exp, 6150, "call", -qty)]


# -- 1. idempotency ---------------------------------------------------------------------
def test_same_idempotency_key_twice_creates_one_position_and_one_event(tl_app, tl):
    body = {"symbol": "SPX", "underlying": "I:SPX", "legs": vertical(day(20))}
    first = tl.c.post("/api/positions", json=body, idem="create-1")
    again = tl.c.post("/api/positions", json=body, idem="create-1")
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json["id"] == first.json["id"]
    listed = tl.c.get("/api/positions").json
    assert [p["id"] for p in listed] == [first.json["id"]]
    created = [e for e in events_of(tl_app, tl.c.user.id) if e.type == "PositionCreated"]
    assert len(created) == 1
    # same key, different body: refused, nothing written
    other = tl.c.post("/api/positions", json={**body, "symbol": "NDX"}, idem="create-1")
    assert other.status_code == 422 and other.json["code"] == "idempotency_key_reused"
    assert len(tl.c.get("/api/positions").json) == 1


def test_retried_fill_is_recorded_once(tl):
    p = tl.create(vertical(day(20)))
    body = {"leg_id": p["legs"][0]["id"], "price": "3.10", "quantity": 1, "occurred_at": "2025-02-05T10:30:00Z"}
    a = tl.c.post(f"/api/positions/{p['id']}/fills", json=body, idem="fill-1")
    b = tl.c.post(f"/api/positions/{p['id']}/fills", json=body, idem="fill-1")
    assert a.status_code == b.status_code == 201 and a.json["fill"]["id"] == b.json["fill"]["id"]
    assert len(tl.snapshot(p["id"])["fills"]) == 1
    assert tl.get(p["id"])["version"] == 2


# -- 2. versioning ----------------------------------------------------------------------
def test_stale_if_match_is_409_with_the_current_version(tl):
    p = tl.create(vertical(day(20)))
    r = tl.c.patch(f"/api/positions/{p['id']}", json={"tags": ["a"]}, if_match=1, idem=key())
    assert r.status_code == 200 and r.json["version"] == 2 and r.json["tags"] == ["a"]
    assert r.headers["ETag"] == '"2"'
    stale = tl.c.patch(f"/api/positions/{p['id']}", json={"tags": ["b"]}, if_match=1, idem=key())
    assert stale.status_code == 409
    assert stale.json["code"] == "version_conflict"
    assert stale.json["current_version"] == 2 and stale.json["current"]["tags"] == ["a"]
    missing = tl.c.patch(f"/api/positions/{p['id']}", json={"tags": ["b"]}, idem=key())
    assert missing.status_code == 428
    # the seed's client sends a bare number
    bare = tl.c.patch(f"/api/positions/{p['id']}", json={"tags": ["b"]}, headers={"If-Match": "2"}, idem=key())
    assert bare.status_code == 200 and bare.json["version"] == 3
    stale_close = tl.c.post(f"/api/positions/{p['id']}/close", json={}, if_match=2, idem=key())
    assert stale_close.status_code == 409 and stale_close.json["current_version"] == 3
    assert tl.get(p["id"])["status"] == "planned"


# -- 3. snapshot ------------------------------------------------------------------------
def test_snapshot_has_legs_fills_and_derived_metadata(tl):
    p = tl.create(vertical(day(16), qty=2))
    long_leg, short_leg = p["legs"]
    tl.fill(p["id"], long_leg["id"], "24.50", 2, fees="1.30")
    tl.fill(p["id"], short_leg["id"], "9.80", -2, fees="1.30")
    s = tl.snapshot(p["id"])
    assert s["position_id"] == p["id"] and s["version"] == 3 and s["status"] == "open"
    assert (s["symbol"], s["underlying"]) == ("SPX", "I:SPX")
    assert [(leg["strike"], leg["right"], leg["quantity"], leg["open_quantity"], leg["multiplier"], leg["cost_basis"])
            for leg in s["legs"]] == [("6100.0000", "call", 2, 2, 100, "4900.0000"),
                                      ("6150.0000", "call", -2, -2, 100, "-1960.0000")]
    assert all(leg["expiry"] == day(16) and leg["instrument_type"] == "option" for leg in s["legs"])
    assert [(f["leg_id"], f["price"], f["quantity"], f["occurred_at"], f["kind"], f["realized_pnl"])
            for f in s["fills"]] == [
        (long_leg["id"], "24.5000", 2, "2025-02-05T10:30:00.000Z", "trade", None),
        (short_leg["id"], "9.8000", -2, "2025-02-05T10:30:00.000Z", "trade", None)]
    assert all(f["recorded_at"] for f in s["fills"])
    # 24.50*2*100 - 9.80*2*100 = 2940 debit; width 50 * 2 * 100 = 10000; max loss is a P&L: -2940
    m = s["metadata"]
    assert m == {"derived_strategy": "vertical", "net_debit": "2940.0000", "fees": "2.6000", "open_fees": "2.6000",
                 "realized_pnl": "0.0000", "unrealized_pnl": None, "dte": dte_of(day(16)),
                 "settles_at": m["settles_at"], "max_profit": "7060.0000", "max_loss": "-2940.0000"}
    # a PM-settled SPX weekly/serial settles at that day's close in New York (20:00 or 21:00 UTC, 18:00 early)
    assert m["settles_at"].startswith(day(16)) and m["settles_at"][11:13] in ("18", "20", "21")
    assert s["as_of"] is None


def test_unbounded_risk_is_null(tl):
    p = tl.create([opt(day(30), 6000, "call", -1)])
    tl.fill(p["id"], p["legs"][0]["id"], "40", -1)
    m = tl.snapshot(p["id"])["metadata"]
    assert m["derived_strategy"] == "single"
    assert m["net_debit"] == "-4000.0000" and m["max_profit"] == "4000.0000" and m["max_loss"] is None


# -- 4. events --------------------------------------------------------------------------
ENVELOPE = {"event_id", "event_seq", "type", "aggregate_type", "aggregate_id", "aggregate_version",
            "occurred_at", "recorded_at", "user_id", "schema_version", "payload"}


def test_events_carry_the_full_envelope_and_the_agreed_payloads(tl_app, tl):
    p = tl.create(vertical(day(20)))
    tl.fill(p["id"], p["legs"][0]["id"], "5", 1, fees="0.65", at="2025-02-05T10:30:00Z")
    r = tl.c.patch(f"/api/positions/{p['id']}", json={"add_legs": [opt(day(20), 6200, "call", 1)]},
                   if_match=2, idem=key())
    assert r.status_code == 200
    evs = events_of(tl_app, tl.c.user.id, p["id"])
    assert [e.type for e in evs] == ["PositionCreated", "FillRecorded", "PositionAdjusted"]
    for e in evs:
        d = e.to_dict()
        assert ENVELOPE <= set(d) and all(d[k] is not None for k in ENVELOPE)
        assert d["aggregate_type"] == "position" and d["aggregate_id"] == p["id"]
        assert d["user_id"] == tl.c.user.id and d["stream"] == "tradelog.events"
    assert [e.aggregate_version for e in evs] == [1, 2, 3]
    assert [e.event_seq for e in evs] == sorted(e.event_seq for e in evs)
    created, filled, adjusted = (e.to_dict()["payload"] for e in evs)
    assert created["position"]["id"] == p["id"] and len(created["position"]["legs"]) == 2
    assert set(filled) == {"position_id", "fill", "slippage", "leg"} and filled["slippage"] is None
    assert set(filled["fill"]) == {"id", "leg_id", "price", "quantity", "fees", "occurred_at", "recorded_at",
                                   "kind", "realized_pnl"}
    assert filled["leg"] == {"leg_id": p["legs"][0]["id"], "open_quantity": 1, "cost_basis": "500.0000",
                             "average_price": "5.000000", "realized_pnl": "0.0000"}
    assert filled["fill"]["price"] == "5.0000" and filled["fill"]["fees"] == "0.6500"
    assert evs[1].occurred_at.isoformat().startswith("2025-02-05T10:30:00")  # market time
    assert adjusted["change"] == "legs_added" and len(adjusted["position"]["legs"]) == 3


# -- 8. headless full flow --------------------------------------------------------------
def test_headless_full_flow(tl):
    exp = day(-3)  # a past expiry is fine for a logged (not ordered) position
    p = tl.create([opt(exp, 5900, "put", -1)], tags=["income"], campaign_id="camp-1")
    assert p["status"] == "planned" and p["opened_at"] is None and p["tags"] == ["income"]
    r = tl.c.patch(f"/api/positions/{p['id']}", json={"add_legs": [opt(exp, 5875, "put", 1)]},
                   if_match=p["version"], idem=key())
    assert r.status_code == 200 and len(r.json["legs"]) == 2
    short_leg, long_leg = r.json["legs"]
    tl.fill(p["id"], short_leg["id"], "4.20", -1, fees="1", at="2025-02-03T14:30:00Z")
    f = tl.fill(p["id"], long_leg["id"], "2.60", 1, fees="1", at="2025-02-03T14:30:00Z")
    assert f["position"]["status"] == "open" and f["position"]["opened_at"] == "2025-02-03T14:30:00.000Z"
    assert [x["id"] for x in tl.c.get("/api/positions?status=open").json] == [p["id"]]
    j = tl.c.post("/api/journal_entries", json={"position_id": p["id"], "object_of_reflection": "put spread",
                                                "bias_flags": ["fomo"], "notes": "n", "phase": "entry"}, idem=key())
    assert j.status_code == 201 and j.json["phase"] == "entry"
    # the short put is bought back; the long put expires worthless (held option legs past expiry settle at 0)
    tl.fill(p["id"], short_leg["id"], "0.50", 1, fees="1", at="2025-02-04T15:00:00Z")
    closed = tl.close(p["id"])
    assert closed["status"] == "closed" and closed["closed_at"]
    # 420 credit - 260 debit - 50 buy-back - 3 fees
    assert closed["realized_pnl"] == "107.0000" and closed["fees"] == "3.0000"
    assert tl.c.get("/api/positions?status=open").json == []
    assert [x["id"] for x in tl.c.get("/api/positions?status=closed").json] == [p["id"]]
    entries = tl.c.get(f"/api/journal_entries?position_id={p['id']}").json
    assert [e["object_of_reflection"] for e in entries] == ["put spread"]
    stats = tl.c.get("/api/tradelog/stats").json
    assert stats["overall"]["closed_positions"] == 1 and stats["overall"]["total_pnl"] == "107.0000"


def test_list_is_paginated(tl):
    ids = [tl.create([{"instrument_type": "stock", "quantity": 10}], symbol=f"S{i}")["id"] for i in range(3)]
    r = tl.c.get("/api/positions?page=1&page_size=2")
    assert r.status_code == 200 and len(r.json) == 2
    meta = json.loads(r.headers["X-Pagination"])
    assert (meta["total"], meta["total_pages"], meta["page"], meta["next_page"]) == (3, 2, 1, 2)
    r2 = tl.c.get("/api/positions?page=2&page_size=2")
    assert len(r2.json) == 1 and "next_page" not in json.loads(r2.headers["X-Pagination"])
    assert {p["id"] for p in r.json + r2.json} == set(ids)


# -- replay -----------------------------------------------------------------------------
def fold(events):
    """The test's own fold of a position's events (independent of the service's)."""
    state, fills = None, []
    for e in events:
        p = e["payload"]
        if e["type"] in ("PositionCreated", "PositionAdjusted"):
            state = {k: p["position"][k] for k in ("status", "symbol", "underlying", "opened_at", "closed_at", "legs")}
        elif e["type"] == "FillRecorded":
            fills.append(p["fill"])
            if state["status"] == "planned":
                state["status"], state["opened_at"] = "open", p["fill"]["occurred_at"]
        elif e["type"] == "LegSettled":
            fills.extend(p["fills"])
            state["legs"] = state["legs"] + p["legs_added"]
        elif e["type"] == "PositionClosed":
            state["status"], state["closed_at"] = "closed", p["closed_at"]
        else:
            continue
        state["version"] = e["aggregate_version"]
    return state, fills


def test_replaying_a_positions_events_rebuilds_its_snapshot(tl):
    from plugins.tradelog import service
    import datetime as dt

    exp = day(-1)
    p = tl.create([opt(exp, 100, "call", 1)], symbol="AAPL", underlying="AAPL")
    tl.fill(p["id"], p["legs"][0]["id"], "3.00", 1, fees="0.5")
    v = tl.get(p["id"])["version"]
    r = tl.c.patch(f"/api/positions/{p['id']}", json={"add_legs": [opt(exp, 110, "call", -1)], "tags": ["x"]},
                   if_match=v, idem=key())
    assert r.status_code == 200
    tl.fill(p["id"], r.json["legs"][1]["id"], "1.00", -1, fees="0.5")
    r = tl.c.patch(f"/api/positions/{p['id']}", json={"update_legs": [{"id": r.json["legs"][1]["id"], "quantity": -1}]},
                   if_match=r.json["version"] + 1, idem=key())
    assert r.status_code == 200
    tl.close(p["id"])  # both legs are past their settlement moment: close expires them worthless first
    events = tl.c.get(f"/api/positions/{p['id']}/events").json
    assert [e["type"] for e in events] == ["PositionCreated", "FillRecorded", "PositionAdjusted", "FillRecorded",
                                           "PositionAdjusted", "LegSettled", "LegSettled", "PositionClosed"]
    snap = tl.snapshot(p["id"])
    state, fills = fold(events)
    assert {k: v for k, v in state.items() if k != "legs"} == {k: snap[k] for k in state if k != "legs"}
    assert [leg["id"] for leg in state["legs"]] == [leg["id"] for leg in snap["legs"]]
    assert [{k: v for k, v in f.items() if k != "realized_pnl"} for f in fills] == \
        [{k: v for k, v in f.items() if k != "realized_pnl"} for f in snap["fills"]]
    # long call 3.00 and short call 1.00 both expire worthless: -300 + 100 - 1.00 fees
    assert snap["metadata"]["realized_pnl"] == "-201.0000"
    assert [f["kind"] for f in snap["fills"]] == ["trade", "trade", "expiration", "expiration"]
    rebuilt = service.replay(events, dt.datetime.now(dt.timezone.utc))
    from plugins.tradelog.schemas import Snapshot
    assert Snapshot().dump(rebuilt) == snap


# -- as of ------------------------------------------------------------------------------
def test_as_of_answers_from_what_was_recorded_by_then(tl):
    p = tl.create(vertical(day(30)))
    t1 = p["updated_at"]
    time.sleep(0.01)
    tl.c.patch(f"/api/positions/{p['id']}", json={"tags": ["later"]}, if_match=1, idem=key())
    time.sleep(0.01)
    f = tl.fill(p["id"], p["legs"][0]["id"], "20", 1)
    t3 = f["fill"]["recorded_at"]
    time.sleep(0.01)

    then = tl.get(p["id"], as_of=t1)
    assert then["version"] == 1 and then["tags"] == [] and then["status"] == "planned"
    assert then == p  # the very representation answered at the time
    at_fill = tl.get(p["id"], as_of=t3)
    assert at_fill["version"] == 3 and at_fill["tags"] == ["later"] and at_fill["status"] == "open"
    assert tl.snapshot(p["id"], as_of=t1)["fills"] == []
    s3 = tl.snapshot(p["id"], as_of=t3)
    assert len(s3["fills"]) == 1 and s3["as_of"] == t3 and s3["metadata"]["net_debit"] == "2000.0000"
    before = tl.c.get(f"/api/positions/{p['id']}", query_string={"as_of": "2000-01-01T00:00:00Z"})
    assert before.status_code == 404
    bad = tl.c.get(f"/api/positions/{p['id']}", query_string={"as_of": "yesterday"})
    assert bad.status_code == 422 and "as_of" in bad.json["errors"]["query"]


# -- transitions ------------------------------------------------------------------------
def test_illegal_transitions_are_409_naming_the_state(tl):
    p = tl.create([{"instrument_type": "stock", "quantity": 100}], symbol="MSFT", underlying="MSFT")
    leg = p["legs"][0]["id"]
    tl.fill(p["id"], leg, "400", 100)
    not_flat = tl.c.post(f"/api/positions/{p['id']}/close", json={}, if_match=2, idem=key())
    assert not_flat.status_code == 409 and not_flat.json["code"] == "position_not_flat"
    tl.fill(p["id"], leg, "410", -100)
    closed = tl.close(p["id"])
    assert closed["realized_pnl"] == "1000.0000"
    fill = tl.c.post(f"/api/positions/{p['id']}/fills", json={"leg_id": leg, "price": "1", "quantity": 1,
                                                               "occurred_at": "2025-02-05T10:30:00Z"}, idem=key())
    assert fill.status_code == 409 and fill.json["code"] == "invalid_state"
    assert "closed" in fill.json["message"] and fill.json["state"] == "closed"
    patch = tl.c.patch(f"/api/positions/{p['id']}", json={"tags": ["x"]}, if_match=closed["version"], idem=key())
    assert patch.status_code == 409 and "closed" in patch.json["message"]
    again = tl.c.post(f"/api/positions/{p['id']}/close", json={}, if_match=closed["version"], idem=key())
    assert again.status_code == 409 and again.json["state"] == "closed"


def test_unexpired_option_legs_must_be_flat_to_close(tl):
    p = tl.create([opt(day(10), 50, "put", 1)])
    tl.fill(p["id"], p["legs"][0]["id"], "1", 1)
    r = tl.c.post(f"/api/positions/{p['id']}/close", json={}, if_match=2, idem=key())
    assert r.status_code == 409 and r.json["code"] == "position_not_flat"


def test_planned_position_opens_explicitly(tl):
    p = tl.create(vertical(day(20)))
    r = tl.c.patch(f"/api/positions/{p['id']}", json={"status": "open"}, if_match=1, idem=key())
    assert r.status_code == 200 and r.json["status"] == "open" and r.json["opened_at"]
    r = tl.c.patch(f"/api/positions/{p['id']}", json={"status": "closed"}, if_match=2, idem=key())
    assert r.status_code == 422 and "status" in r.json["errors"]["json"]


def test_risk_artifact_reference(tl_app, tl):
    p = tl.create(vertical(day(20)))
    body = {"artifact_id": "art-1", "computed_at": "2025-02-05T10:31:00Z"}
    r = tl.c.post(f"/api/positions/{p['id']}/risk-artifact", json=body, idem=key())
    assert r.status_code == 201
    assert r.json["artifact_id"] == "art-1" and r.json["computed_at"] == "2025-02-05T10:31:00.000Z"
    assert tl.c.post(f"/api/positions/{p['id']}/risk-artifact", json=body, idem=key()).status_code == 200
    refs = tl.c.get(f"/api/positions/{p['id']}/risk-artifact").json
    assert [(x["artifact_id"], x["position_id"]) for x in refs] == [("art-1", p["id"])]
    linked = [e for e in events_of(tl_app, tl.c.user.id, p["id"]) if e.type == "RiskArtifactLinked"]
    assert len(linked) == 1 and linked[0].payload == {"position_id": p["id"], "artifact_id": "art-1",
                                                       "computed_at": "2025-02-05T10:31:00.000Z"}
    assert tl.get(p["id"])["version"] == 1  # a reference, not a change of the position
    missing = tl.c.post(f"/api/positions/{p['id']}/risk-artifact", json={"artifact_id": "a"}, idem=key())
    assert missing.status_code == 422 and "computed_at" in missing.json["errors"]["json"]


def test_risk_artifact_computed_event_links_the_reference(tl_app, tl, run_consumers):
    from bus import outbox
    p = tl.create(vertical(day(20)))
    run_consumers(tl_app)
    with tl_app.extensions["tradeloop"].db.transaction() as conn:
        outbox.emit(conn, "riskgraph.events", "RiskArtifactComputed", aggregate_type="artifact",
                    aggregate_id="art-9", aggregate_version=1, user_id=tl.c.user.id,
                    payload={"artifact_id": "art-9", "position_id": p["id"], "strategy_id": None, "source_version": 1,
                             "computed_at": "2025-02-05T10:31:00.000Z", "summary": {}})
    run_consumers(tl_app)
    refs = tl.c.get(f"/api/positions/{p['id']}/risk-artifact").json
    assert [x["artifact_id"] for x in refs] == ["art-9"]
