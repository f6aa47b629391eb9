"""The demo data a newcomer sees is believable (issue 12, item 6): every fill is inside a
regular session of the exchange and every option expires on a trading day.

Checked against exchange-calendars' XNYS directly (not through optionsmath's helpers the demo
uses), on today's demo and on demos made "as of" awkward moments: the day after Thanksgiving,
a Sunday, New Year's Day, the Monday after Good Friday and a Saturday morning.
"""
from __future__ import annotations

import datetime as dt

import exchange_calendars
import pandas as pd
import pytest

PLUGINS = ["tradelog", "riskgraph"]
XNYS = exchange_calendars.get_calendar("XNYS", start="2020-01-01")

AS_OF = [
    dt.datetime(2025, 11, 28, 15, 0, tzinfo=dt.timezone.utc),   # Friday after Thanksgiving (early close)
    dt.datetime(2025, 11, 30, 12, 0, tzinfo=dt.timezone.utc),   # Sunday
    dt.datetime(2026, 1, 1, 18, 0, tzinfo=dt.timezone.utc),     # New Year's Day
    dt.datetime(2026, 4, 6, 14, 0, tzinfo=dt.timezone.utc),     # Monday after Good Friday, before the open
    dt.datetime(2026, 7, 4, 9, 0, tzinfo=dt.timezone.utc),      # Saturday, Independence Day
]


def in_session(moment: dt.datetime) -> bool:
    """Regular hours of an XNYS session: open <= moment < close (early closes included)."""
    day = moment.date().isoformat()
    if not XNYS.is_session(day):
        return False
    ts = pd.Timestamp(moment)
    return XNYS.session_open(day) <= ts < XNYS.session_close(day)


def parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def items(body):
    return body["items"] if isinstance(body, dict) and "items" in body else body


def book_of(c) -> tuple[list[dict], list[dict], list[dict]]:
    """(positions with their fills, pending orders, strategies) through the API."""
    positions = items(c.get("/api/positions?page_size=500").json)
    for p in positions:
        p["fills"] = c.get(f"/api/positions/{p['id']}/snapshot").json["fills"]
    orders = items(c.get("/api/orders/active").json)
    strategies = c.get("/api/risk-graph/strategies").json
    strategies = strategies.get("strategies", strategies.get("items")) if isinstance(strategies, dict) else strategies
    return positions, orders, strategies


def check_book(positions, orders, strategies, now: dt.datetime) -> None:
    assert len(positions) == 5 and len(orders) == 1 and len(strategies) == 3
    fills = [f for p in positions for f in p["fills"]]
    assert len(fills) >= 10
    for f in fills:
        t = parse(f["occurred_at"])
        assert in_session(t), f"fill at {t:%a %Y-%m-%d %H:%M} UTC is outside an XNYS session"
        assert t < now, f"fill at {t} is after 'now' ({now})"
    expiries = {leg["expiry"] for p in positions for leg in p["legs"] if leg["instrument_type"] == "option"}
    expiries |= {leg["expiry"] for o in orders for leg in o["position_template"]["legs"]}
    expiries |= {s["expiration"] for s in strategies}
    assert len(expiries) >= 5
    for e in expiries:
        day = dt.date.fromisoformat(e)
        assert XNYS.is_session(e), f"expiry {e} ({day:%A}) is not a trading day"
    open_expiries = [leg["expiry"] for p in positions if p["status"] == "open" for leg in p["legs"]
                     if leg["instrument_type"] == "option"]
    open_expiries += [leg["expiry"] for o in orders for leg in o["position_template"]["legs"]]
    open_expiries += [s["expiration"] for s in strategies]
    assert all(dt.date.fromisoformat(e) > now.date() for e in open_expiries), "an open leg has already expired"
    for p in positions:                                    # a closed trade was closed before its expiry
        if p["status"] == "closed":
            closed = max(parse(f["occurred_at"]) for f in p["fills"]).date()
            legs = [leg["expiry"] for leg in p["legs"] if leg["instrument_type"] == "option"]
            assert all(closed <= dt.date.fromisoformat(e) for e in legs)


@pytest.mark.parametrize("now", AS_OF, ids=lambda d: d.strftime("%Y-%m-%d_%a"))
def test_demo_dates_follow_the_exchange_calendar(app_factory, new_client, now):
    from plugins.riskgraph import demo as rg_demo
    from plugins.tradelog import demo as tl_demo
    app = app_factory(PLUGINS)
    c = new_client(app)
    ext = app.extensions["tradeloop"]
    with ext.db.transaction() as conn:
        tl_demo.load(conn, c.user.id, now=now)
        rg_demo.load(conn, c.user.id, now=now)
    check_book(*book_of(c), now)


def test_todays_demo_through_the_hook(app_factory, new_client):
    """What ``tradeloop serve --demo`` loads (the load_demo_data hook, today's date)."""
    app = app_factory(PLUGINS)
    c = new_client(app)
    ext = app.extensions["tradeloop"]
    for impl in ext.plugins.pm.hook.load_demo_data.get_hookimpls():
        with ext.db.transaction() as conn:
            impl.function(conn=conn, user_id=c.user.id)
    check_book(*book_of(c), dt.datetime.now(dt.timezone.utc))


def test_the_check_catches_a_weekend_fill_and_a_holiday_expiry():
    """The checks can fail: Saturday and Thanksgiving fills, Sunday and New Year's expiries
    (what the old demo produced) are all refused."""
    assert not in_session(dt.datetime(2025, 11, 29, 15, 0, tzinfo=dt.timezone.utc))  # Saturday
    assert not in_session(dt.datetime(2025, 11, 27, 15, 0, tzinfo=dt.timezone.utc))  # Thanksgiving
    assert not in_session(dt.datetime(2025, 11, 28, 19, 0, tzinfo=dt.timezone.utc))  # after the 13:00 ET early close
    assert in_session(dt.datetime(2025, 11, 28, 15, 0, tzinfo=dt.timezone.utc))
    assert not XNYS.is_session("2025-11-30") and not XNYS.is_session("2026-01-01")


@pytest.mark.slow
def test_demo_ml_history_gives_the_ml_panel_real_numbers(tmp_path, monkeypatch):
    """The mlloop demo (run by ``serve --demo`` in a background process): settled decisions
    scored by a promoted model, so the evaluation endpoints and the go-live checklist have
    numbers. Counts are checked against the database's own rows."""
    import sqlalchemy as sa

    from app import create_app
    from app.migrate import upgrade
    from plugins.mlloop import demo
    from tests.conftest import make_user
    monkeypatch.setattr(demo, "IDEAS_PER_DAY", 100)
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/ml.db", "REDIS_URL": None, "KAFKA_BOOTSTRAP_SERVERS": None,
                      "TRADELOOP_PLUGINS": ["mlloop"], "SECRET_KEY": "t", "ACCESS_LOG": False})
    ext = app.extensions["tradeloop"]
    upgrade(ext, echo=None)
    admin = make_user(app, admin=True)
    with app.app_context():
        made = demo.build_history(ext, admin.user.id)
    assert made["ideas"] == made["settled"] == (demo.RULE_DAYS + demo.ML_DAYS) * 100
    with ext.db.read() as conn:
        scored = conn.execute(sa.text("SELECT COUNT(*) FROM ml_decisions WHERE ml_score IS NOT NULL")).scalar()
    assert scored == demo.ML_DAYS * 100                      # the model scored the later days' ideas
    outcomes = admin.get("/api/admin/ml/evaluation/score-outcomes").json
    assert outcomes["n"] == scored and sum(b["count"] for b in outcomes["buckets"]) == scored
    assert any(b["win_rate"] is not None for b in outcomes["buckets"])
    vs_rules = admin.get("/api/admin/ml/evaluation/ml-vs-rules").json
    assert vs_rules["n"] == scored
    checklist = admin.get("/api/admin/ml/evaluation/go-live-checklist").json
    values = {c["key"]: c["value"] for c in checklist["criteria"]}
    assert any(v not in (None, 0, {}, []) for v in values.values()), values
    body = admin.get("/api/admin/ml/models").json
    models = body.get("models", body.get("items")) if isinstance(body, dict) else body
    assert [m["status"] for m in models if m["id"] == made["model_id"]] == ["champion"]
