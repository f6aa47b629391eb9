"""The console's daily P&L panel (app/static/console/pnl.js) in headless Chromium: the
calendar shows each trading day's P&L in New York time, the equity curve is drawn, and a new
fill redraws it live."""
from __future__ import annotations

import pytest

from tests.browser.test_console import call, expect, new_session

pytestmark = pytest.mark.browser


def test_daily_pnl_calendar_and_equity_curve(browser, server, shot):
    """By hand: 100 XYZ bought @ 50 on Mon 2025-03-03, sold @ 52 on Tue 2025-03-04 -> Tue +200;
    10 bought @ 20 and sold @ 18 at 2025-03-06 02:00 UTC (Wednesday 21:00 in New York) -> Wed -20.
    Equity 0, 200, 180; drawdown on Wednesday -20."""
    uid, token = server.user()
    p = call(server, token, "POST", "/api/positions", {"symbol": "XYZ", "legs": [{"instrument_type": "stock", "quantity": 100}]})
    leg = p["legs"][0]["id"]
    for price, qty, at in (("50", 100, "2025-03-03T15:00:00Z"), ("52", -100, "2025-03-04T15:00:00Z")):
        call(server, token, "POST", f"/api/positions/{p['id']}/fills",
             {"leg_id": leg, "price": price, "quantity": qty, "occurred_at": at})
    ctx, page = new_session(browser, server, token)
    try:
        expect(page.locator('#pnl-calendar td.pnl-day[data-date="2025-03-04"]')).to_have_attribute("data-pnl", "200.0000")
        expect(page.locator('#pnl-calendar td.pnl-day.up')).to_have_count(1)
        expect(page.locator("#pnl-equity canvas")).to_be_visible()
        expect(page.locator("#pnl-summary")).to_contain_text("America/New_York")
        q = call(server, token, "POST", "/api/positions", {"symbol": "XYZ", "legs": [{"instrument_type": "stock", "quantity": 10}]})
        for price, qty in (("20", 10), ("18", -10)):
            call(server, token, "POST", f"/api/positions/{q['id']}/fills",
                 {"leg_id": q["legs"][0]["id"], "price": price, "quantity": qty, "occurred_at": "2025-03-06T02:00:00Z"})
        wed = page.locator('#pnl-calendar td.pnl-day[data-date="2025-03-05"]')
        expect(wed).to_have_attribute("data-pnl", "-20.0000")     # booked to Wednesday, New York
        expect(wed).to_have_class("pnl-day down")
        expect(page.locator("#pnl-equity")).to_have_attribute("data-points", "3")
        expect(page.locator("#pnl-summary")).to_contain_text("max drawdown -$20.00")
        shot(page, "daily-pnl")
        assert page.errors == []
    finally:
        ctx.close()
