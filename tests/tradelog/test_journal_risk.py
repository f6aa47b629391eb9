"""The journal remembers the risk picture (issue 19 item 2): an entry records the position's
version and the riskgraph artifact in force when it was written — through the published
contracts only (RiskArtifactComputed on the bus, the risk-artifact link) — and
``GET /api/journal_entries/{id}`` links to exactly that version and artifact."""
from __future__ import annotations

from tests.tradelog.conftest import day, key, opt


def test_an_entry_links_the_version_and_artifact_it_was_written_on(app_factory, new_client, run_consumers):
    app = app_factory(["tradelog", "riskgraph"])
    c = new_client(app)
    assert c.put("/api/risk-graph/market-inputs/XYZ", json={"spot": 100, "iv": 0.3}).status_code == 200
    exp = day(30)
    p = c.post("/api/positions", json={"symbol": "XYZ", "legs": [opt(exp, 100, "call", 1), opt(exp, 110, "call", -1)]},
               idem=key()).json
    for leg, price in zip(p["legs"], ("4.00", "1.50")):
        r = c.post(f"/api/positions/{p['id']}/fills", json={"leg_id": leg["id"], "price": price,
                                                             "quantity": leg["quantity"],
                                                             "occurred_at": "2026-01-05T15:00:00Z"}, idem=key())
        assert r.status_code == 201, r.json
    run_consumers(app)  # riskgraph computes from the events; tradelog links the artifact
    refs = c.get(f"/api/positions/{p['id']}/risk-artifact").json
    at_v3 = [x for x in refs if x["position_version"] == 3]
    assert at_v3, refs
    first = c.post("/api/journal_entries", json={"position_id": p["id"], "object_of_reflection": "the spread",
                                                 "phase": "entry"}, idem=key()).json
    assert first["position_version"] == 3 and first["risk_artifact_id"] == at_v3[0]["artifact_id"]

    # the position moves on (a partial close at version 4) and riskgraph recomputes
    r = c.post(f"/api/positions/{p['id']}/fills", json={"leg_id": p["legs"][1]["id"], "price": "0.50", "quantity": 1,
                                                         "occurred_at": "2026-01-06T15:00:00Z"}, idem=key())
    assert r.status_code == 201
    run_consumers(app)
    later = c.post("/api/journal_entries", json={"position_id": p["id"], "object_of_reflection": "took the short off",
                                                 "phase": "management", "risk_strategy_id": "s-1",
                                                 "risk_strategy_version": 2}, idem=key()).json
    assert later["position_version"] == 4 and later["risk_artifact_id"] != first["risk_artifact_id"]

    got = c.get(f"/api/journal_entries/{first['id']}").json
    assert got["links"] == {"position": f"/api/positions/{p['id']}?version=3",
                            "snapshot": f"/api/positions/{p['id']}/snapshot?version=3",
                            "risk_artifact": f"/api/risk-graph/artifacts/{first['risk_artifact_id']}",
                            "risk_strategy_versions": None}
    then = c.get(got["links"]["position"]).json
    assert then["version"] == 3 and [leg["open_quantity"] for leg in then["legs"]] == [1, -1]
    snap = c.get(got["links"]["snapshot"]).json
    assert snap["version"] == 3 and len(snap["fills"]) == 2 and snap["metadata"]["net_debit"] == "250.0000"
    art = c.get(got["links"]["risk_artifact"]).json
    assert art["id"] == first["risk_artifact_id"] and art["source_version"] == 3 and art["curves"]["expiry_pnl"]
    assert c.get(f"/api/journal_entries/{later['id']}").json["links"]["risk_strategy_versions"] == \
        "/api/risk-graph/strategies/s-1/versions"
    # another user sees none of it
    other = new_client(app)
    assert other.get(f"/api/journal_entries/{first['id']}").status_code == 404
    bad = c.post("/api/journal_entries", json={"position_id": p["id"], "object_of_reflection": "x", "phase": "entry",
                                               "risk_strategy_id": "s-1"}, idem=key())
    assert bad.status_code == 422 and "risk_strategy_version" in bad.json["errors"]["json"]
    assert c.get(f"/api/positions/{p['id']}?version=99").status_code == 404
    both = c.get(f"/api/positions/{p['id']}?version=3&as_of=2026-01-01T00:00:00Z")
    assert both.status_code == 422 and "version" in both.json["errors"]["query"]
