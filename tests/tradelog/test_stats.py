"""Performance statistics against hand-computed values."""
from __future__ import annotations

from tests.tradelog.conftest import day, opt


EXP = "2025-06-13"  # a Friday; the trades are closed the Monday after


def _vertical_trade(tl, open_prices, close_prices, closed_at):
    exp = EXP
    p = tl.create([opt(exp, 6100, "call", 1), opt(exp, 6150, "call", -1)])
    long_leg, short_leg = p["legs"]
    tl.fill(p["id"], long_leg["id"], open_prices[0], 1, fees="1")
    tl.fill(p["id"], short_leg["id"], open_prices[1], -1, fees="1")
    tl.fill(p["id"], long_leg["id"], close_prices[0], -1, fees="1")
    tl.fill(p["id"], short_leg["id"], close_prices[1], 1, fees="1")
    return tl.close(p["id"], closed_at=closed_at)


def test_stats_per_user_and_per_strategy(tl):
    # P1 vertical: debit (9 - 4) * 100 = 500, exit (25 - 10) * 100 = 1500, 4 fees -> +996; 1R = 500
    p1 = _vertical_trade(tl, ("9", "4"), ("25", "10"), "2025-06-16T14:00:00Z")
    assert p1["realized_pnl"] == "996.0000"
    # P2 vertical: debit 500, exit (3 - 1) * 100 = 200 -> -304; R = -0.608
    p2 = _vertical_trade(tl, ("9", "4"), ("3", "1"), "2025-06-16T15:00:00Z")
    assert p2["realized_pnl"] == "-304.0000"
    # P3 stock: 100 @ 50 -> 45, no fees -> -500; 1R = max loss of long stock = 5000; R = -0.1
    s = tl.create([{"instrument_type": "stock", "quantity": 100}], symbol="XYZ", underlying="XYZ")
    tl.fill(s["id"], s["legs"][0]["id"], "50", 100)
    tl.fill(s["id"], s["legs"][0]["id"], "45", -100)
    assert tl.close(s["id"], closed_at="2025-06-16T16:00:00Z")["realized_pnl"] == "-500.0000"
    # P4 long put, expired worthless: -200 - 2 fees = -202; 1R = 200; R = -1.01
    lp = tl.create([opt(EXP, 50, "put", 1)], symbol="XYZ", underlying="XYZ")
    tl.fill(lp["id"], lp["legs"][0]["id"], "2", 1, fees="2")
    assert tl.close(lp["id"], closed_at="2025-06-16T17:00:00Z")["realized_pnl"] == "-202.0000"
    # an open position does not count
    tl.create([opt(day(9), 50, "put", 1)], symbol="XYZ")

    st = tl.c.get("/api/tradelog/stats").json
    assert st["overall"] == {
        "closed_positions": 4, "wins": 1, "losses": 3, "win_rate": "0.2500",
        "gross_profit": "996.0000", "gross_loss": "-1006.0000",
        "profit_factor": "0.9901",          # 996 / 1006
        "expectancy": "-2.5000",            # -10 / 4
        "average_r": "0.0685",              # (1.992 - 0.608 - 0.1 - 1.01) / 4
        "max_drawdown": "-1006.0000",       # peak 996 -> trough -10 (a P&L: negative)
        "total_pnl": "-10.0000", "total_fees": "10.0000"}
    by = {b["derived_strategy"]: b for b in st["by_strategy"]}
    assert set(by) == {"vertical", "stock", "single"}
    v = by["vertical"]
    assert (v["closed_positions"], v["wins"], v["win_rate"]) == (2, 1, "0.5000")  # per position, not per leg
    assert v["profit_factor"] == "3.2763" and v["expectancy"] == "346.0000" and v["average_r"] == "0.6920"
    assert v["max_drawdown"] == "-304.0000" and v["total_fees"] == "8.0000"
    assert by["stock"]["profit_factor"] == "0.0000" and by["stock"]["average_r"] == "-0.1000"
    assert by["single"]["average_r"] == "-1.0100"


def test_stats_without_closed_positions(tl):
    st = tl.c.get("/api/tradelog/stats").json
    assert st["by_strategy"] == []
    assert st["overall"]["closed_positions"] == 0 and st["overall"]["win_rate"] is None
    assert st["overall"]["profit_factor"] is None and st["overall"]["max_drawdown"] == "0.0000"
