"""One API, one format (issue 12, item 4): the same strike, the same default underlying and
the same "no tags" read alike in the trade log's and the risk graph's responses and events."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.tradelog.conftest import day, opt

PLUGINS = ["tradelog", "riskgraph"]


def _payloads(app, stream, user_id, type_):
    from bus import outbox
    with app.extensions["tradeloop"].db.read() as conn:
        return [json.loads(e.to_json())["payload"] for e in outbox.read(conn, stream, 0, user_id=user_id)
                if e.type == type_]


@pytest.mark.parametrize("symbol, underlying", [("SPX", "I:SPX"), ("SPXW", "I:SPX"), ("AAPL", "AAPL")])
def test_trade_log_and_risk_graph_agree_on_strike_underlying_and_tags(app_factory, new_client, symbol, underlying):
    """A position and a strategy on the same symbol and strike, neither naming an underlying
    nor tags: the strike reads "6100.0000" in both plugins' responses and events, both get
    the same default underlying (an index root's index as I:<index>, else the symbol), and
    the position's tags are [] (never null) in its response, list and event, and after a
    PATCH that sends null."""
    app = app_factory(PLUGINS)
    c = new_client(app)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    pos = c.post("/api/positions", json={"symbol": symbol, "legs": [opt(day(40), "6100", "call", 1)]}, headers=key)
    assert pos.status_code == 201, pos.json
    strat = c.post("/api/risk-graph/strategies", headers={"Idempotency-Key": uuid.uuid4().hex}, json={
        "symbol": symbol, "strategy": "single", "side": "call", "strike": "6100", "dte": 40})
    assert strat.status_code == 201, strat.json
    p, s = pos.json, strat.json
    assert p["legs"][0]["strike"] == s["strike"] == "6100.0000"
    assert p["underlying"] == s["underlying"] == underlying
    assert p["tags"] == []
    assert [x["tags"] for x in c.get("/api/positions").json if x["id"] == p["id"]] == [[]]
    assert c.get(f"/api/positions/{p['id']}/snapshot").json["underlying"] == underlying
    created = _payloads(app, "tradelog.events", c.user.id, "PositionCreated")[-1]["position"]
    assert created["tags"] == [] and created["underlying"] == underlying
    assert created["legs"][0]["strike"] == "6100.0000"
    added = _payloads(app, "riskgraph.events", c.user.id, "StrategyAdded")[-1]["strategy"]
    assert added["strike"] == "6100.0000" and added["underlying"] == underlying
    cleared = c.patch(f"/api/positions/{p['id']}", json={"tags": None}, headers={
        "Idempotency-Key": uuid.uuid4().hex, "If-Match": '"1"'})
    assert cleared.status_code == 200 and cleared.json["tags"] == []
