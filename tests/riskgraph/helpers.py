"""Shared bits of the riskgraph tests."""
from __future__ import annotations


API = "/api/risk-graph"


def vertical(**over):
    body = {"symbol": "SPX", "strategy": "vertical", "side": "call", "strike": "6000", "width": 10,
            "dte": 7, "expiration": "2031-01-17", "debit": "3.5"}
    body.update(over)
    return body


def add(client, **over):
    r = client.post(f"{API}/strategies", json=vertical(**over))
    assert r.status_code == 201, r.json
    return r.json


def events(app, user_id, stream="riskgraph.events", types=None):
    from bus import outbox
    ext = app.extensions["tradeloop"]
    with ext.db.transaction() as c:
        evs = outbox.read(c, stream, 0, user_id=user_id, limit=10_000)
    return [e for e in evs if types is None or e.type in types]
