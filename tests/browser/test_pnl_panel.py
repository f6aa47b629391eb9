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


def test_performance_by_group_and_the_journal_risk_picture(browser, server, shot):
    """Two closed XYZ stock trades tagged "a" (+200) and "b" (-50): grouped by tag, the table
    shows each with its total; a journal entry written after riskgraph linked an artifact to an
    open option position shows that artifact's curve beside it."""
    import time
    uid, token = server.user()
    for tag, buy, sell in (("a", "50", "52"), ("b", "50", "49.50")):
        p = call(server, token, "POST", "/api/positions", {"symbol": "XYZ", "tags": [tag],
                                                           "legs": [{"instrument_type": "stock", "quantity": 100}]})
        leg = p["legs"][0]["id"]
        call(server, token, "POST", f"/api/positions/{p['id']}/fills",
             {"leg_id": leg, "price": buy, "quantity": 100, "occurred_at": "2025-03-03T15:00:00Z"})
        call(server, token, "POST", f"/api/positions/{p['id']}/fills",
             {"leg_id": leg, "price": sell, "quantity": -100, "occurred_at": "2025-03-04T15:00:00Z"})
        call(server, token, "POST", f"/api/positions/{p['id']}/close", {}, if_match=3)
    call(server, token, "PUT", "/api/risk-graph/market-inputs/XYZ", {"spot": 100, "iv": 0.3})
    from tests.browser.test_console import future
    exp = future(30)
    p = call(server, token, "POST", "/api/positions", {"symbol": "XYZ", "legs": [
        {"instrument_type": "option", "expiry": exp, "strike": "100", "right": "call", "quantity": 1}]})
    call(server, token, "POST", f"/api/positions/{p['id']}/fills",
         {"leg_id": p["legs"][0]["id"], "price": "3.00", "quantity": 1, "occurred_at": "2026-01-05T15:00:00Z"})
    deadline = time.time() + 30
    while not call(server, token, "GET", f"/api/positions/{p['id']}/risk-artifact") and time.time() < deadline:
        time.sleep(0.3)  # the server's bus workers: riskgraph computes, tradelog links
    entry = call(server, token, "POST", "/api/journal_entries", {"position_id": p["id"], "phase": "entry",
                                                                 "object_of_reflection": "bought the call"})
    assert entry["risk_artifact_id"], "riskgraph linked no artifact within 30 s"
    ctx, page = new_session(browser, server, token)
    try:
        page.select_option("#stats-group-by", "tag")
        expect(page.locator('#stats-groups tr[data-key="a"] td').nth(7)).to_have_text("$200.00")
        expect(page.locator('#stats-groups tr[data-key="b"] td').nth(7)).to_have_text("-$50.00")
        expect(page.locator("#stats-chart")).to_have_attribute("data-groups", "2")
        page.locator(f'#positions-body tr.position[data-id="{p["id"]}"]').click()
        risk = page.locator(f'#pd-journal li[data-id="{entry["id"]}"] .journal-risk')
        expect(risk).to_have_attribute("data-artifact", entry["risk_artifact_id"])
        expect(risk.locator("canvas")).to_be_visible()
        shot(page, "journal-risk")
        assert page.errors == []
    finally:
        ctx.close()
