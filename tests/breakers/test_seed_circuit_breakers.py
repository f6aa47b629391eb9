"""The seed's "Circuit Breaker Tests" (ML plan section 9, 17-20): limits set over HTTP, P&L and
fills fed over the bus, enforcement asked through the host hooks."""
from __future__ import annotations

import datetime as dt
import uuid

from plugins.breakers import engine, service


def sources(vetoes):
    return [v.source for v in vetoes]


# -- 17. Daily Loss: trading stops when the limit is hit ------------------------------------------
def test_17_daily_loss_stops_trading_when_limit_hit(desk, monkeypatch):
    desk.set_limit("daily_loss_limit", "1000")
    desk.close_position("-600.00")
    assert desk.check() == []
    b = desk.breaker("daily_loss_limit")
    assert (b["value"], b["tripped"]) == ("600.000000", False)

    desk.close_position("250.00")       # a winner: daily P&L -350
    desk.close_position("-650.00")      # daily P&L -1000: the limit is hit
    vetoes = desk.check()
    assert sources(vetoes) == ["daily_loss_limit"]
    assert "1000" in vetoes[0].message and "limit" in vetoes[0].message
    assert vetoes[0].detail["severity"] == "critical"
    assert sources(desk.check(reduces=True)) == ["daily_loss_limit"], "critical blocks every order"
    assert desk.scoring() == "rules_only"

    st = desk.status()
    assert st["trading_state"]["state"] == "HALTED"
    assert st["trading_state"]["breaker"] == "daily_loss_limit"
    b = desk.breaker("daily_loss_limit")
    assert (b["tripped"], b["value"], b["limit"]) == (True, "1000.000000", "1000.000000")
    assert b["tripped_at"] is not None and b["since"] == b["tripped_at"]
    assert st["books"]["trades"]["daily_pnl"] == "-1000.0000"

    # Audited and emitted: which breaker, value vs limit.
    tripped = desk.events("BreakerTripped")
    assert [e.payload["breaker"] for e in tripped] == ["daily_loss_limit"]
    assert tripped[0].payload["value"] == "1000.000000" and tripped[0].payload["limit"] == "1000.000000"
    changed = desk.events("TradingStateChanged")
    assert [(e.payload["from_state"], e.payload["to_state"], e.payload["breaker"]) for e in changed] == [
        ("ACTIVE", "HALTED", "daily_loss_limit")]

    # It stays tripped within the session even if the P&L recovers...
    desk.close_position("900.00")
    assert sources(desk.check()) == ["daily_loss_limit"]

    # ...and resets at the next session open (09:30 New York).
    opened = engine.next_session_open(dt.datetime.now(dt.timezone.utc))
    monkeypatch.setattr(service, "now", lambda: opened + dt.timedelta(minutes=1))
    b = desk.breaker("daily_loss_limit")
    assert (b["tripped"], b["value"], b["cleared_by"]) == (False, "0.000000", "auto:session_open")
    assert desk.status()["trading_state"]["state"] == "ACTIVE"
    assert desk.check() == []
    cleared = desk.events("BreakerCleared")
    assert [(e.payload["breaker"], e.payload["cleared_by"]) for e in cleared] == [("daily_loss_limit", "auto:session_open")]
    assert [e.payload["to_state"] for e in desk.events("TradingStateChanged")] == ["HALTED", "ACTIVE"]


def test_17_daily_loss_limit_over_http_vetoes_over_http(desk):
    """The veto as a client sees it: 403 order_vetoed naming the breaker (through tradelog's
    execute when that plugin is installed; see test_end_to_end.py)."""
    desk.set_limit("daily_loss_limit", "100", severity="critical")
    desk.close_position("-100.01")
    st = desk.status()
    assert st["trading_state"] == {**st["trading_state"], "state": "HALTED", "breaker": "daily_loss_limit"}
    audit = desk.c.get("/api/breakers/audit").json
    actions = [a["action"] for a in audit]
    assert actions[:3] == ["state_changed", "breaker_tripped", "config_set"]
    assert audit[0]["from_state"] == "ACTIVE" and audit[0]["to_state"] == "HALTED"
    assert audit[1]["value"] == "100.010000" and audit[1]["limit"] == "100.000000"


# -- 18. Drawdown: trading stops when the drawdown is exceeded ------------------------------------
def test_18_drawdown_from_high_water_stops_trading(desk):
    desk.set_limit("max_drawdown", "0.10", capital="10000")
    desk.close_position("2000")          # equity 12000 = high water
    desk.close_position("-1000")         # 1000 / 12000 = 8.33 %
    assert desk.check() == []
    assert desk.breaker("max_drawdown")["value"] == "0.083333"
    desk.close_position("-250")          # 1250 / 12000 = 10.42 %
    vetoes = desk.check()
    assert sources(vetoes) == ["max_drawdown"]
    assert "10.42%" in vetoes[0].message
    assert desk.status()["trading_state"]["state"] == "HALTED"

    # Stays tripped when equity recovers, until a person clears it (who/why recorded).
    desk.close_position("500")
    assert sources(desk.check()) == ["max_drawdown"]
    r = desk.c.post("/api/breakers/max_drawdown/clear", json={"reason": "reviewed the book"}, idem=str(uuid.uuid4()))
    assert r.status_code == 200, r.json
    assert r.json["tripped"] is False and r.json["cleared_by"].startswith(desk.c.user.name)
    assert desk.check() == []
    assert desk.status()["trading_state"]["state"] == "ACTIVE"
    cleared = desk.events("BreakerCleared")[-1].payload
    assert cleared["reason"] == "reviewed the book" and cleared["breaker"] == "max_drawdown"

    # Clearing what is not tripped is a 409 naming the state.
    r = desk.c.post("/api/breakers/max_drawdown/clear", json={"reason": "again"})
    assert r.status_code == 409 and r.json["code"] == "not_tripped"

    # A new loss that breaches it again trips it again.
    desk.close_position("-800")          # cumulative 450 -> equity 10450 vs high water 12000
    assert sources(desk.check()) == ["max_drawdown"]


def test_18_drawdown_with_reduce_only_severity_lets_only_reducing_orders_through(desk):
    desk.set_limit("max_drawdown", "0.05", capital="1000", severity="reduce_only")
    desk.close_position("-60")
    assert desk.status()["trading_state"]["state"] == "REDUCING"
    assert sources(desk.check(reduces=False)) == ["max_drawdown"]
    assert desk.check(reduces=True) == []
    assert desk.scoring() == "rules_only"


# -- 19. Fallback: ML unavailable -> graceful degradation to rules-only ---------------------------
def test_19_low_model_confidence_degrades_to_rules_only_and_keeps_trading(desk):
    desk.set_limit("model_confidence", "0.6")
    assert desk.scoring() == "normal"
    r = desk.c.post("/api/breakers/inputs/model-confidence", json={"value": "0.45", "regime": "high_vix"})
    assert r.status_code == 200 and r.json["tripped"] is True and r.json["value"] == "0.450000"
    assert desk.scoring() == "rules_only"
    assert desk.check() == [], "a warning breaker never blocks orders"
    st = desk.status()
    assert (st["trading_state"]["state"], st["scoring_mode"]) == ("ACTIVE", "rules_only")
    # Confidence recovering does not silently re-enable ML: a person clears it.
    desk.c.post("/api/breakers/inputs/model-confidence", json={"value": "0.9"})
    assert desk.scoring() == "rules_only"
    assert desk.c.post("/api/breakers/model_confidence/clear", json={"reason": "regime stable"}).status_code == 200
    assert desk.scoring() == "normal"


def test_19_slippage_anomaly_over_the_bus_needs_ten_fills(desk):
    desk.set_limit("slippage_anomaly", "0.05")
    for _ in range(9):
        desk.order_filled(0.20, run=False)
    desk.run()
    b = desk.breaker("slippage_anomaly")
    assert (b["tripped"], b["value"]) == (False, "0.200000")
    assert desk.scoring() == "normal"
    desk.order_filled(0.20)
    assert desk.breaker("slippage_anomaly")["tripped"] is True
    assert desk.scoring() == "rules_only"
    assert desk.check() == []


def test_19_breakers_disabled_vetoes_nothing_and_scores_normally(app_factory, new_client):
    app = app_factory(["tests.plugins.notes.plugin"])
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    with app.app_context(), ext.db.transaction() as conn:
        assert ext.check_order_allowed(conn, c.user.id, {"order_id": "x", "reduces_position": False}) == []
        assert ext.scoring_mode(conn, c.user.id) == "normal"
    assert c.get("/api/breakers/status").status_code == 404
    assert c.post("/api/notes", json={"title": "still works"}).status_code == 201


# -- 20. Instant Disable: one call, no ML influence -------------------------------------------------
def test_20_one_call_turns_ml_scoring_off_at_once(desk):
    assert desk.scoring() == "normal"
    r = desk.c.post("/api/breakers/kill-switch", json={"kind": "ml_scoring", "reason": "model misbehaving"},
                    idem=str(uuid.uuid4()))
    assert r.status_code == 200, r.json
    # The very next scoring is rules-only: no consumer run, no cache to expire.
    assert desk.scoring() == "rules_only"
    assert desk.check() == [], "the ML switch does not stop orders"
    ks = r.json
    assert ks["engaged"] and ks["engaged_by"].startswith(desk.c.user.name) and ks["reason"] == "model misbehaving"
    # It stays on (a second engage returns the same switch) until released, with who/when/why.
    again = desk.c.post("/api/breakers/kill-switch", json={"kind": "ml_scoring", "reason": "twice"})
    assert again.json["id"] == ks["id"]
    assert desk.status()["kill_switches"][0]["id"] == ks["id"]
    rel = desk.c.post("/api/breakers/kill-switch/release", json={"kind": "ml_scoring", "reason": "fixed"})
    assert rel.status_code == 200 and rel.json["released_by"] and rel.json["release_reason"] == "fixed"
    assert desk.scoring() == "normal"
    assert [e.type for e in desk.events() if e.type.startswith("KillSwitch")] == ["KillSwitchEngaged", "KillSwitchReleased"]
    again = desk.c.post("/api/breakers/kill-switch/release", json={"kind": "ml_scoring", "reason": "twice"})
    assert again.status_code == 409 and again.json["code"] == "not_engaged"


def test_20_orders_kill_switch_blocks_every_new_order(desk):
    r = desk.c.post("/api/breakers/kill-switch", json={"kind": "orders", "reason": "fat finger"})
    assert r.status_code == 200
    vetoes = desk.check(reduces=True)
    assert sources(vetoes) == ["kill_switch:orders"] and "fat finger" in vetoes[0].message
    assert desk.status()["trading_state"]["state"] == "HALTED"
    assert desk.c.post("/api/breakers/kill-switch/release", json={"kind": "orders", "reason": "ok"}).status_code == 200
    assert desk.check() == []
    assert [e.payload["to_state"] for e in desk.events("TradingStateChanged")] == ["HALTED", "ACTIVE"]


def test_20_deployment_kill_switch_by_admin_reaches_every_user(make_desk):
    admin, other = make_desk(admin=True), make_desk()
    r = other.c.post("/api/breakers/kill-switch", json={"kind": "ml_scoring", "reason": "x", "scope": "deployment"})
    assert r.status_code == 403
    r = admin.c.post("/api/breakers/kill-switch", json={"kind": "ml_scoring", "reason": "model recall",
                                                         "scope": "deployment"})
    assert r.status_code == 200 and r.json["scope"] == "deployment"
    try:
        assert other.scoring() == "rules_only"
        with other.ext.db.transaction() as conn:
            assert other.ext.scoring_mode(conn, None) == "rules_only"
        assert other.check() == []
    finally:
        r = admin.c.post("/api/breakers/kill-switch/release", json={"kind": "ml_scoring", "reason": "done",
                                                                    "scope": "deployment"})
        assert r.status_code == 200
    assert other.scoring() == "normal"


def test_20_cli_kill_and_release(desk):
    runner = desk.app.test_cli_runner()
    name = desk.c.user.name
    res = runner.invoke(args=["breakers", "kill", "--kind", "orders", "--reason", "desk closed", "--user", name,
                              "--by", "ops"])
    assert res.exit_code == 0, res.output
    assert sources(desk.check()) == ["kill_switch:orders"]
    res = runner.invoke(args=["breakers", "status", "--user", name])
    assert res.exit_code == 0 and '"HALTED"' in res.output and "ops (cli)" in res.output
    res = runner.invoke(args=["breakers", "release", "--kind", "orders", "--reason", "open", "--user", name])
    assert res.exit_code == 0, res.output
    assert desk.check() == []
    res = runner.invoke(args=["breakers", "set-limit", "daily_loss_limit", "50", "--user", name])
    assert res.exit_code == 0, res.output
    desk.close_position("-75")
    assert sources(desk.check()) == ["daily_loss_limit"]
    res = runner.invoke(args=["breakers", "clear", "daily_loss_limit", "--reason", "ok", "--user", name])
    assert res.exit_code == 0, res.output
    assert desk.check() == []
    res = runner.invoke(args=["breakers", "release", "--kind", "orders", "--reason", "x", "--user", name])
    assert res.exit_code != 0 and "not engaged" in res.output


def test_cli_deployment_limits(desk):
    runner = desk.app.test_cli_runner()
    res = runner.invoke(args=["breakers", "set-limit", "model_confidence", "0.5", "--deployment", "--by", "risk desk"])
    assert res.exit_code == 0, res.output
    try:
        cfg = desk.c.get("/api/breakers/config/model_confidence").json
        assert cfg["deployment"]["updated_by"] == "risk desk (cli)" and cfg["effective"]["scope"] == "deployment"
        desk.c.post("/api/breakers/inputs/model-confidence", json={"value": "0.3"})
        assert desk.scoring() == "rules_only"
    finally:
        res = runner.invoke(args=["breakers", "set-limit", "model_confidence", "0.5", "--deployment", "--disable"])
        assert res.exit_code == 0, res.output
    res = runner.invoke(args=["breakers", "set-limit", "max_drawdown", "0.1", "--user", desk.c.user.name])
    assert res.exit_code != 0 and "capital" in res.output
