"""docs/tradelog.md's worked example, step by step through the API: every figure in its
table must be what the trade log answers (the doc's hand computation is beside each step)."""
from __future__ import annotations

import os
import re

from tests.conftest import ROOT
from tests.tradelog.conftest import key, opt


def doc_figures() -> dict[str, str]:
    text = open(os.path.join(ROOT, "docs", "tradelog.md"), encoding="utf-8").read()
    block = re.search(r"<!-- worked-example -->(.*?)<!-- /worked-example -->", text, re.S).group(1)
    rows = [line.strip().strip("|").split("|") for line in block.strip().splitlines()[2:]]
    return {name.strip(): value.strip() for name, value in rows}


def money(text: str) -> str:
    """The API's 4-place money string as the doc's 2-place figure."""
    return f"{float(text):.2f}"


def test_the_worked_example(tl):
    got = {}
    p1 = tl.create([opt("2025-05-16", 50, "put", -3)], symbol="XYZ", underlying="XYZ")
    leg = p1["legs"][0]["id"]
    tl.fill(p1["id"], leg, "1.50", -3, fees="1.95", at="2025-05-01T15:00:00Z")
    tl.fill(p1["id"], leg, "0.90", 1, fees="0.65", at="2025-05-08T15:00:00Z")
    s = tl.snapshot(p1["id"])
    got["P1 realized after the buy-back"] = money(s["metadata"]["realized_pnl"])
    got["P1 open quantity after the buy-back"] = str(s["legs"][0]["open_quantity"])
    got["P1 net debit after the buy-back"] = money(s["metadata"]["net_debit"])
    got["P1 max profit after the buy-back"] = money(s["metadata"]["max_profit"])
    got["P1 max loss after the buy-back"] = money(s["metadata"]["max_loss"])
    r = tl.c.post(f"/api/positions/{p1['id']}/roll", json={
        "occurred_at": "2025-05-15T15:00:00Z", "close": [{"leg_id": leg, "price": "0.60", "fees": "1.30"}],
        "open": [{**opt("2025-06-20", 48, "put", -2), "price": "1.40", "fees": "1.30"}]},
        if_match=tl.get(p1["id"])["version"], idem=key())
    assert r.status_code == 201, r.json
    got["P1 realized when rolled"] = money(r.json["from"]["realized_pnl"])
    got["roll net credit"] = money(r.json["roll"]["net_credit"])
    p2 = r.json["to"]
    a = tl.c.post(f"/api/positions/{p2['id']}/legs/{p2['legs'][0]['id']}/settle",
                  json={"kind": "assignment", "settlement_value": "46.50"}, if_match=p2["version"], idem=key())
    assert a.status_code == 201, a.json
    got["shares delivered by the assignment"] = str(a.json["settlement"]["delivered_quantity"])
    got["P2 realized after the assignment"] = money(a.json["position"]["realized_pnl"])
    tl.fill(p2["id"], a.json["settlement"]["delivered_leg_id"], "47.00", -200, fees="1.00",
            at="2025-06-23T15:00:00Z")
    got["P2 realized when closed"] = money(tl.close(p2["id"], closed_at="2025-06-23T16:00:00Z")["realized_pnl"])
    chain = tl.c.get(f"/api/positions/{p2['id']}/chain").json
    got["chain net credit"] = money(chain["net_credit"])
    got["chain fees"] = money(chain["fees"])
    got["chain realized P&L"] = money(chain["realized_pnl"])
    daily = tl.c.get("/api/tradelog/daily-pnl").json
    assert [d["date"] for d in daily["days"]] == ["2025-05-01", "2025-05-08", "2025-05-15", "2025-06-20", "2025-06-23"]
    got["daily P&L (05-01, 05-08, 05-15, 06-20, 06-23)"] = ", ".join(money(d["pnl"]) for d in daily["days"])
    got["equity curve"] = ", ".join(money(d["equity"]) for d in daily["days"])
    got["max drawdown"] = money(daily["summary"]["max_drawdown"])
    assert got == doc_figures()
