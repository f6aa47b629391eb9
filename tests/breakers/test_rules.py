"""Breaker rules beyond the seed's four: redelivery, restart, configs, manual states, sessions."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bus.consumer import Group, Runner
from bus.base import Delivery
from plugins.breakers import engine, handlers, tables

NY = ZoneInfo("America/New_York")


def ny(*args):
    return dt.datetime(*args, tzinfo=NY).astimezone(dt.timezone.utc)


# -- sessions (pure) ------------------------------------------------------------------------
@pytest.mark.parametrize("at, expected_next, expected_last", [
    (ny(2025, 3, 5, 9, 0), ny(2025, 3, 5, 9, 30), ny(2025, 3, 4, 9, 30)),     # Wed before the open
    (ny(2025, 3, 5, 9, 30), ny(2025, 3, 6, 9, 30), ny(2025, 3, 5, 9, 30)),    # at the open
    (ny(2025, 3, 7, 16, 0), ny(2025, 3, 10, 9, 30), ny(2025, 3, 7, 9, 30)),   # Friday -> Monday
    (ny(2025, 3, 8, 12, 0), ny(2025, 3, 10, 9, 30), ny(2025, 3, 7, 9, 30)),   # Saturday
])
def test_session_opens_skip_weekends(at, expected_next, expected_last):
    assert engine.next_session_open(at) == expected_next
    assert engine.last_session_open(at) == expected_last


def test_session_open_follows_daylight_saving():
    # US DST starts 2025-03-09: 09:30 New York is 14:30 UTC before, 13:30 UTC after.
    assert engine.next_session_open(ny(2025, 3, 7, 10, 0)).hour == 13
    assert engine.last_session_open(ny(2025, 3, 7, 10, 0)).hour == 14
    assert engine.next_session_open(dt.datetime(2025, 3, 3, tzinfo=dt.timezone.utc), "08:00", "Europe/London") == \
        dt.datetime(2025, 3, 3, 8, 0, tzinfo=dt.timezone.utc)


# -- inputs: redelivery changes nothing ---------------------------------------------------------
def test_redelivered_and_twice_handled_events_change_nothing(desk):
    desk.set_limit("daily_loss_limit", "500")
    ev = desk.close_position("-300", run=False)
    assert desk.run() >= 1
    # The same event through a consumer runner again (a redelivery) ...
    runner = Runner(desk.ext.db, desk.ext.bus,
                    Group.from_subscriptions("breakers", handlers.SUBSCRIPTIONS), max_attempts=1)
    try:
        runner.handle([Delivery(ev, ("tradelog.events", ev.event_seq))])
        runner.handle([Delivery(ev, ("tradelog.events", ev.event_seq))])
    finally:
        runner.close()
    assert runner.stats.skipped_duplicates == 2
    # ... and the handler itself called twice with it (no dedupe row around it).
    with desk.ext.db.transaction() as conn:
        handlers.on_position_closed(conn, ev)
    with desk.ext.db.transaction() as conn:
        handlers.on_position_closed(conn, ev)
    st = desk.status()
    assert st["books"]["trades"]["cumulative"] == "-300.0000"
    assert desk.breaker("daily_loss_limit")["tripped"] is False
    assert len(desk.table(tables.pnl_ledger, user_id=desk.uid)) == 1
    # A slippage sample is keyed by its order too.
    fill = desk.order_filled(0.5)
    with desk.ext.db.transaction() as conn:
        handlers.on_order_filled(conn, fill)
    assert len(desk.table(tables.slippage_log, user_id=desk.uid)) == 1


def test_ml_ledger_pnl_is_a_separate_book(desk):
    desk.set_limit("daily_loss_limit", "100")
    now = dt.datetime.now(dt.timezone.utc)
    desk.emit("mlloop.pnl", "PnlRecorded", {
        "idea_id": "i1", "trade_id": None, "event_type": "settlement", "pnl_delta": "-500.00", "fees": "2.50",
        "slippage": "0", "underlying_price": "5000", "event_time": now.isoformat()},
        aggregate_type="idea", aggregate_id="i1", at=now)
    desk.run()
    st = desk.status()
    assert st["books"]["ml"]["daily_pnl"] == "-502.5000"
    assert st["books"]["trades"]["daily_pnl"] == "0.0000"
    assert desk.check() == [], "the model's paper losses never halt real trading"


# -- restart: a new app on the same database enforces the same ---------------------------------
def test_a_restarted_service_enforces_the_same_state(desk, stack_config):
    desk.set_limit("daily_loss_limit", "200")
    desk.close_position("-250")
    desk.c.post("/api/breakers/kill-switch", json={"kind": "ml_scoring", "reason": "restart drill"})
    assert [v.source for v in desk.check()] == ["daily_loss_limit"]

    from app import create_app
    fresh = create_app({**stack_config, "TRADELOOP_PLUGINS": ["breakers"], "SECRET_KEY": "other",
                        "KAFKA_BOOTSTRAP_SERVERS": None})
    ext = fresh.extensions["tradeloop"]
    try:
        with ext.db.transaction() as conn:
            vetoes = ext.check_order_allowed(conn, desk.uid, {"order_id": "o", "reduces_position": True})
            assert [v.source for v in vetoes] == ["daily_loss_limit"]
            assert ext.scoring_mode(conn, desk.uid) == "rules_only"
    finally:
        ext.db.dispose()


# -- configs -------------------------------------------------------------------------------------
def test_user_config_tightens_but_never_loosens_the_deployments(make_desk):
    admin, user = make_desk(admin=True), make_desk()
    r = user.c.put("/api/breakers/config/daily_loss_limit", json={"limit": "10", "scope": "deployment"})
    assert r.status_code == 403
    admin.set_limit("daily_loss_limit", "1000", scope="deployment", severity="warning")
    try:
        cfg = user.set_limit("daily_loss_limit", "5000", severity="critical")
        assert cfg["effective"]["limit"] == "1000.000000"       # the deployment's stricter limit
        assert cfg["effective"]["severity"] == "critical"        # the user's stricter severity
        assert cfg["effective"]["scope"] == "both"
        cfg = user.set_limit("daily_loss_limit", "400")
        assert cfg["effective"]["limit"] == "400.000000"
        assert cfg["deployment"]["limit"] == "1000.000000" and cfg["user"]["limit"] == "400.000000"
        # A user cannot switch a deployment breaker off.
        cfg = user.set_limit("daily_loss_limit", "400", enabled=False)
        assert cfg["effective"]["limit"] == "1000.000000" and cfg["effective"]["scope"] == "deployment"
    finally:
        admin.set_limit("daily_loss_limit", "1000", scope="deployment", enabled=False)
    assert user.c.get("/api/breakers/config/daily_loss_limit").json["effective"] is None


@pytest.mark.parametrize("name, body, field", [
    ("max_drawdown", {"limit": "0.1"}, "capital"),
    ("max_drawdown", {"limit": "10", "capital": "1000"}, "limit"),
    ("order_rate", {"limit": "1.5"}, "limit"),
    ("order_rate", {"limit": "0"}, "limit"),
    ("model_confidence", {"limit": "2"}, "limit"),
    ("daily_loss_limit", {"limit": "-5"}, "limit"),
    ("daily_loss_limit", {"limit": "5", "severity": "panic"}, "severity"),
    ("daily_loss_limit", {"limit": "5", "session_tz": "Mars/Olympus"}, "session_tz"),
    ("daily_loss_limit", {"limit": "5", "session_open": "25:00"}, "session_open"),
])
def test_config_validation_names_the_field(desk, name, body, field):
    r = desk.c.put(f"/api/breakers/config/{name}", json=body)
    assert r.status_code == 422, r.json
    assert field in r.json["errors"]["json"]


def test_unknown_breaker_is_404(desk):
    assert desk.c.put("/api/breakers/config/vibes", json={"limit": "1"}).status_code == 404
    assert desk.c.post("/api/breakers/vibes/clear", json={"reason": "x"}).status_code == 404


def test_lowering_a_limit_below_the_current_value_trips_at_once(desk):
    desk.close_position("-80")
    assert desk.check() == []
    desk.set_limit("daily_loss_limit", "50")
    assert [v.source for v in desk.check()] == ["daily_loss_limit"]
    # Turning it off clears it (recorded), and the user trades again.
    desk.set_limit("daily_loss_limit", "50", enabled=False)
    assert desk.check() == []
    assert desk.events("BreakerCleared")[-1].payload["breaker"] == "daily_loss_limit"


# -- trading states ------------------------------------------------------------------------------
def test_manual_states_and_their_precedence(desk):
    def state():
        return desk.status()["trading_state"]["state"]

    r = desk.c.post("/api/breakers/trading-state", json={"state": "REDUCING", "reason": "end of quarter"})
    assert r.status_code == 200 and r.json["state"] == "REDUCING" and r.json["manual_state"] == "REDUCING"
    assert [v.source for v in desk.check(reduces=False)] == ["trading_state"]
    assert desk.check(reduces=True) == []
    assert desk.scoring() == "normal", "a manual state is about orders, not scoring"

    # A critical breaker on top of REDUCING halts.
    desk.set_limit("daily_loss_limit", "10")
    desk.close_position("-20")
    assert state() == "HALTED" and desk.check(reduces=True) != []
    desk.c.post("/api/breakers/daily_loss_limit/clear", json={"reason": "ok"})
    assert state() == "REDUCING"

    desk.c.post("/api/breakers/trading-state", json={"state": "HALTED", "reason": "stop"})
    assert [v.source for v in desk.check(reduces=True)] == ["trading_state"]
    desk.c.post("/api/breakers/trading-state", json={"state": "ACTIVE", "reason": "go"})
    assert state() == "ACTIVE" and desk.check() == []
    assert [(e.payload["from_state"], e.payload["to_state"]) for e in desk.events("TradingStateChanged")] == [
        ("ACTIVE", "REDUCING"), ("REDUCING", "HALTED"), ("HALTED", "REDUCING"), ("REDUCING", "HALTED"),
        ("HALTED", "ACTIVE")]
    r = desk.c.post("/api/breakers/trading-state", json={"state": "PAUSED", "reason": "x"})
    assert r.status_code == 422 and "state" in r.json["errors"]["json"]


def test_status_lists_every_breaker_even_unconfigured(desk):
    st = desk.status()
    assert [b["name"] for b in st["breakers"]] == list(engine.NAMES)
    assert all(b["configured"] is False and b["tripped"] is False for b in st["breakers"])
    assert st["trading_state"]["state"] == "ACTIVE" and st["scoring_mode"] == "normal"
    assert desk.check() == []


def test_another_users_breakers_are_untouched(make_desk):
    a, b = make_desk(), make_desk()
    a.set_limit("daily_loss_limit", "10")
    b.set_limit("daily_loss_limit", "10")
    a.close_position("-50")
    assert a.check() != [] and b.check() == []
    assert b.c.post("/api/breakers/daily_loss_limit/clear", json={"reason": "x"}).status_code == 409
    assert a.check() != []
