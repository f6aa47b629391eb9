"""mlloop P&L ledger over HTTP: the seed's tests 4 and 6-8 (P&L reconstruction, event-based
snapshots, settlement labels, daily aggregation), each against hand-computed values."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from plugins.mlloop.tables import daily_performance
from tests.mlloop.mlloop_fixtures import idea, iso, setup_context, t

MON, TUE = dt.date(2025, 1, 6), dt.date(2025, 1, 7)


@pytest.fixture
def app(app_factory):
    return app_factory(["mlloop"])


def _score(cl, cid, ideas):
    r = cl.post("/api/ml/score", json={"context_id": cid, "ideas": ideas})
    assert r.status_code == 200, r.json
    return r.json


def ev(idea_id, when, kind, delta, *, u="6000.00", trade=None, fees=None, slip=None):
    e = {"idea_id": idea_id, "event_type": kind, "event_time": iso(when), "pnl_delta": delta, "underlying_price": u}
    if trade:
        e["trade_id"] = trade
    if fees:
        e["fees"] = fees
    if slip:
        e["slippage"] = slip
    return e


def _scenario(cl, cid):
    """Idea A: long 6000/6010 call vertical for 4.00 (risk 400), traded (t-a); idea B: long
    6000/5990 put vertical for 3.00 expiring Monday (risk 300), traded (t-b); decided Monday
    10:00 New York (15:00 UTC)."""
    a, b = idea("A", expiration="2025-01-07"), idea("B", side="put", debit="3.00", expiration="2025-01-06")
    _score(cl, cid, [a, b])
    r = cl.post("/api/ml/pnl-events", json={"events": [
        ev("A", t(MON, 15, 0), "fill", "-5.00", trade="t-a", fees="2.50", slip="2.50"),
        ev("B", t(MON, 15, 30), "fill", "-3.00", trade="t-b", fees="3.00"),
        ev("A", t(MON, 16, 0), "mark", "150.00"),
        ev("B", t(MON, 16, 30), "mark", "100.00"),
        ev("A", t(MON, 17, 0), "mark", "-300.00"),
        ev("A", t(TUE, 15, 0), "mark", "400.00"),
    ]})
    assert r.status_code == 201, r.json
    return r.json


def test_settlement_labels_and_pnl_reconstruction(app, new_client, run_consumers):
    cl = new_client(app)
    cid = setup_context(cl)
    _scenario(cl, cid)
    # B settles Monday 16:00 NY at 6006: a 6000/5990 put vertical is worthless -> -300 - 3 fees
    r = cl.post("/api/ml/ideas/B/settle", json={"settlement_price": "6006.00"})
    assert r.status_code == 200, r.json
    assert r.json["settlement_status"] == "settled" and r.json["settlement_pnl"] == "-303.00"
    assert r.json["settled_at"] == "2025-01-06T21:00:00.000Z"
    run_consumers(app)
    lb = cl.get("/api/ml/ideas/B/labels").json
    assert lb["cohort_size"] == 1 and lb["cohort_percentile"] == 0.0
    assert cl.get("/api/ml/ideas/A/labels").status_code == 404          # not settled yet
    # A settles Tuesday at 6006: value 6 -> (6 - 4) x 100 - 5 costs = 195
    r = cl.post("/api/ml/ideas/A/settle", json={"settlement_price": "6006.00"})
    assert r.json["settlement_pnl"] == "195.00"
    assert cl.post("/api/ml/ideas/A/settle", json={"settlement_price": "6006.00"}).status_code == 409
    assert cl.post("/api/ml/pnl-events", json={"events": [ev("A", t(TUE, 21, 5), "mark", "1.00")]}).status_code == 409
    run_consumers(app)
    for name, final in (("A", "195.00"), ("B", "-303.00")):
        events = cl.get(f"/api/ml/ideas/{name}/events").json
        assert sum(Decimal(e["pnl_delta"]) for e in events) == Decimal(final)      # seed test 4
        assert events[-1]["event_type"] == "settlement" and events[-1]["cumulative_pnl"] == final
    a = cl.get("/api/ml/ideas/A").json
    # path by hand: cum -5, 145, -155, 245, 195; max 245 at Tue 10:00 NY = 360 + 30 trading minutes
    assert (a["max_pnl"], a["min_pnl"], a["time_to_max_pnl"]) == ("245.00", "-155.00", 390)
    # below zero: fill -> 11:00 (60 min) and 12:00 Mon -> 10:00 Tue (240 + 30)
    assert a["time_in_drawdown"] == 330 and a["lifetime_minutes"] == 750
    la = cl.get("/api/ml/ideas/A/labels").json
    assert la == {**la, "profitable": 1, "profit_tier": 2, "r2r_achieved": 0.4875, "risk_unit": "400.00",
                  "max_favorable_excursion": 0.6125, "max_adverse_excursion": 0.3875,
                  "time_to_max_pnl_pct": 0.52, "time_in_drawdown_pct": 0.44, "hit_stop": 0, "hit_target": 0,
                  "outperformed_median": 0, "cohort_percentile": 0.5, "cohort_size": 2}
    lb = cl.get("/api/ml/ideas/B/labels").json                              # relabelled with the full cohort
    assert lb == {**lb, "profitable": 0, "profit_tier": 0, "r2r_achieved": -1.01, "risk_unit": "300.00",
                  "hit_stop": 1, "outperformed_median": 0, "cohort_percentile": 0.0, "cohort_size": 2}


def test_snapshots_only_on_trigger_events(app, new_client):
    cl = new_client(app)
    cid = setup_context(cl)
    _score(cl, cid, [idea("S")])          # risk 400; entry spot ~6000
    start = t(MON, 15, 0)
    marks = [ev("S", start + dt.timedelta(minutes=m), "mark", "0.01" if m % 2 else "-0.01",
                u="6000.50" if m % 2 else "5999.50") for m in range(1, 151)]
    marks += [ev("S", t(MON, 17, 31), "mark", "0.00", u="6100.00"),      # +1.7%: significant_move
              ev("S", t(MON, 17, 32), "mark", "-250.00", u="6100.00"),   # < -0.5R: stop_touch
              ev("S", t(MON, 17, 33), "mark", "-1.00", u="6100.00"),
              ev("S", t(MON, 17, 34), "mark", "1.00", u="6100.00")]
    r = cl.post("/api/ml/pnl-events", json={"events": marks})
    assert r.status_code == 201 and r.json["recorded"] == 154
    snaps = cl.get("/api/ml/ideas/S/snapshots").json
    assert [(s["trigger_type"], s["snapshot_time"]) for s in snaps] == [
        ("periodic", iso(t(MON, 17, 0))),                      # 120 trading minutes after the decision
        ("significant_move", iso(t(MON, 17, 31))),
        ("stop_touch", iso(t(MON, 17, 32)))]
    assert snaps[2]["unrealized_pnl"] == "-250.00" and snaps[2]["pnl_percent"] == "-62.5000"
    # events must come in time order per idea
    r = cl.post("/api/ml/pnl-events", json={"events": [ev("S", t(MON, 16, 0), "mark", "1.00")]})
    assert r.status_code == 409
    assert cl.post("/api/ml/pnl-events", json={"events": [ev("nope", t(MON, 18, 0), "mark", "1.00")]}).status_code == 404


def test_daily_performance_by_hand_and_materialize_agrees(app, new_client, run_consumers):
    cl = new_client(app)
    cid = setup_context(cl)
    _scenario(cl, cid)
    _score(cl, cid, [idea("H")])          # a hypothetical idea (no trade): not in the account's P&L
    cl.post("/api/ml/pnl-events", json={"events": [ev("H", t(MON, 16, 10), "mark", "999.00")]})
    cl.post("/api/ml/ideas/B/settle", json={"settlement_price": "6006.00"})
    cl.post("/api/ml/ideas/A/settle", json={"settlement_price": "6006.00"})
    run_consumers(app)
    days = cl.get("/api/ml/daily-performance").json
    mon, tue = days["days"]
    # Monday, traded events in time order: -5, -3, +150, +100, -300, -400 (B's settlement: -303 - 97)
    # cumulative -5, -8, 142, 242, -58, -458: high water 242, drawdown 700
    assert mon == {**mon, "date": "2025-01-06", "net_pnl": "-458.00", "total_fees": "5.50", "gross_pnl": "-452.50",
                   "high_water_pnl": "242.00", "max_drawdown": "700.00", "drawdown_pct": "2.8926",
                   "trade_count": 1, "win_count": 0, "loss_count": 1, "event_count": 6,
                   "primary_model_id": None, "ml_contribution_pct": "0.0000"}
    # Tuesday: +400, then A's settlement 195 - 245 = -50
    assert tue == {**tue, "date": "2025-01-07", "net_pnl": "350.00", "high_water_pnl": "400.00",
                   "max_drawdown": "50.00", "drawdown_pct": "0.1250", "trade_count": 1, "win_count": 1,
                   "loss_count": 0, "cumulative_net_pnl": "-108.00"}
    assert days["dates"] == ["2025-01-06", "2025-01-07"] and days["cumulative_net_pnl"] == ["-458.00", "-108.00"]

    def rows():
        with app.extensions["tradeloop"].db.transaction() as c:
            return [{k: v for k, v in r._mapping.items() if k != "updated_at"} for r in c.execute(
                sa.select(daily_performance).where(daily_performance.c.user_id == cl.user.id)
                .order_by(daily_performance.c.date))]
    incremental = rows()
    with app.extensions["tradeloop"].db.transaction() as c:
        c.execute(daily_performance.delete().where(daily_performance.c.user_id == cl.user.id))
    result = app.test_cli_runner().invoke(args=["ml", "materialize", "--user", cl.user.name])
    assert result.exit_code == 0, result.output
    assert rows() == incremental and len(incremental) == 2


def test_actions_are_recorded(app, new_client):
    cl = new_client(app)
    cid = setup_context(cl)
    _score(cl, cid, [idea("T")])
    r = cl.post("/api/ml/ideas/T/actions", json={"action": "traded", "trade_id": "trade-1", "fill_price": "4.10",
                                                  "fill_quantity": 1, "action_time": iso(t(MON, 15, 1))})
    assert r.status_code == 201 and r.json["trade_id"] == "trade-1"
    assert cl.get("/api/ml/ideas/T").json["trade_id"] == "trade-1"
    assert [a["action"] for a in cl.get("/api/ml/ideas/T/actions").json] == ["traded"]
    assert cl.post("/api/ml/ideas/T/actions", json={"action": "bought"}).status_code == 422
