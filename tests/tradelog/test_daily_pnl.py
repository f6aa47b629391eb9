"""Daily P&L per trading day in New York time, marked where marks exist, with the equity
curve, drawdown and streaks; unrealized P&L at marks in the snapshot — by hand."""
from __future__ import annotations

from tests.tradelog.conftest import key


def stock(tl, symbol="XYZ"):
    p = tl.create([{"instrument_type": "stock", "quantity": 100}], symbol=symbol, underlying=symbol)
    return p["id"], p["legs"][0]["id"]


def test_daily_pnl_calendar_equity_drawdown_and_streaks(tl):
    """By hand (XYZ trades on the NYSE calendar; New York is UTC-5 until 2025-03-09):
      A: buy 100 @ 50 Mon 03-03 (fee 1), sell 100 @ 52 Tue 03-04 (fee 1) -> Tue realized 198.
      B: buy 100 @ 60 Tue 03-04; marked 58 Tue 20:30 UTC -> Tue unrealized -200;
         sold @ 57 at 2025-03-06 02:00 UTC = Wed 21:00 New York -> Wed realized -300,
         unrealized back to 0 (+200).
      C: buy 10 @ 10 at 2025-03-08 01:00 UTC = Fri 20:00 New York; sold @ 12 on Saturday
         -> booked to the next trading day, Mon 03-10: +20.
    Days: Mon 0, Tue 198 - 200 = -2, Wed -300 + 200 = -100, Fri 0, Mon +20.
    Equity 0, -2, -102, -102, -82; drawdown = equity - peak (0): 0, -2, -102, -102, -82.
    Streaks: 0, -1, -2, -2 (a flat day breaks nothing), +1."""
    a, la = stock(tl)
    tl.fill(a, la, "50", 100, fees="1", at="2025-03-03T15:00:00Z")
    tl.fill(a, la, "52", -100, fees="1", at="2025-03-04T15:00:00Z")
    b, lb = stock(tl)
    tl.fill(b, lb, "60", 100, at="2025-03-04T16:00:00Z")
    r = tl.c.post(f"/api/positions/{b}/marks", json={"marked_at": "2025-03-04T20:30:00Z",
                                                     "marks": [{"leg_id": lb, "price": "58"}]}, idem=key())
    assert r.status_code == 201, r.json
    s = tl.snapshot(b)
    assert s["legs"][0]["mark"] == "58.0000" and s["legs"][0]["unrealized_pnl"] == "-200.0000"
    assert s["metadata"]["unrealized_pnl"] == "-200.0000"
    tl.fill(b, lb, "57", -100, at="2025-03-06T02:00:00Z")
    c = tl.create([{"instrument_type": "stock", "quantity": 10}], symbol="XYZ", underlying="XYZ")
    tl.fill(c["id"], c["legs"][0]["id"], "10", 10, at="2025-03-08T01:00:00Z")
    tl.fill(c["id"], c["legs"][0]["id"], "12", -10, at="2025-03-08T15:00:00Z")

    d = tl.c.get("/api/tradelog/daily-pnl").json
    assert d["timezone"] == "America/New_York"
    got = [(x["date"], x["realized_pnl"], x["unrealized_change"], x["pnl"], x["equity"], x["drawdown"], x["streak"],
            x["fees"]) for x in d["days"]]
    assert got == [
        ("2025-03-03", "0.0000", "0.0000", "0.0000", "0.0000", "0.0000", 0, "1.0000"),
        ("2025-03-04", "198.0000", "-200.0000", "-2.0000", "-2.0000", "-2.0000", -1, "1.0000"),
        ("2025-03-05", "-300.0000", "200.0000", "-100.0000", "-102.0000", "-102.0000", -2, "0.0000"),
        ("2025-03-07", "0.0000", "0.0000", "0.0000", "-102.0000", "-102.0000", -2, "0.0000"),
        ("2025-03-10", "20.0000", "0.0000", "20.0000", "-82.0000", "-82.0000", 1, "0.0000")]
    assert d["summary"] == {"days": 5, "winning_days": 1, "losing_days": 2, "total_pnl": "-82.0000",
                            "realized_pnl": "-82.0000", "max_drawdown": "-102.0000", "longest_win_streak": 1,
                            "longest_loss_streak": 2, "current_streak": 1}
    cut = tl.c.get("/api/tradelog/daily-pnl?from=2025-03-04&to=2025-03-05").json["days"]
    assert [(x["date"], x["equity"]) for x in cut] == [("2025-03-04", "-2.0000"), ("2025-03-05", "-102.0000")]
    bad = tl.c.get("/api/tradelog/daily-pnl?from=March")
    assert bad.status_code == 422 and "from" in bad.json["errors"]["query"]


def test_marks_are_checked(tl):
    a, la = stock(tl)
    r = tl.c.post(f"/api/positions/{a}/marks", json={"marks": [{"leg_id": "nope", "price": "1"}]}, idem=key())
    assert r.status_code == 422 and "marks" in r.json["errors"]["json"]
    r = tl.c.post(f"/api/positions/{a}/marks", json={"marks": [{"leg_id": la, "price": "-1"}]}, idem=key())
    assert r.status_code == 422
    assert tl.c.get("/api/tradelog/daily-pnl").json["days"] == []
