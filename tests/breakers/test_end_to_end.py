"""Both plugins enabled: orders executed over HTTP through tradelog, P&L and slippage reaching
the breakers over the bus, and the veto coming back as tradelog's 403 ``order_vetoed``."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

pytest.importorskip("plugins.tradelog.plugin")


@pytest.fixture
def trader(app_factory, new_client):
    app = app_factory(["tradelog", "breakers"])
    return new_client(app)


def place(c, limit="100.00", qty=10):
    r = c.post("/api/orders", json={"position_template": {"symbol": "XYZ", "legs": [
        {"instrument_type": "stock", "quantity": qty}]}, "limit_price": limit}, idem=str(uuid.uuid4()))
    assert r.status_code == 201, r.json
    return r.json["id"]


def execute(c, order_id, **body):
    return c.post(f"/api/orders/{order_id}/execute", json=body, idem=str(uuid.uuid4()))


def round_trip(c, buy="100.00", sell="80.00", qty=10):
    """Buy through an order, sell with a fill, close: realized P&L (sell - buy) * qty."""
    r = execute(c, place(c, buy, qty))
    assert r.status_code == 201, r.json
    pos = r.json["position"]
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    r = c.post(f"/api/positions/{pos['id']}/fills", json={
        "leg_id": pos["legs"][0]["id"], "price": sell, "quantity": -qty, "occurred_at": now})
    assert r.status_code == 201, r.json
    version = c.get(f"/api/positions/{pos['id']}").json["version"]
    r = c.post(f"/api/positions/{pos['id']}/close", json={}, if_match=version)
    assert r.status_code == 200, r.json
    return r.json


def test_daily_loss_from_real_trades_vetoes_the_next_execute(trader, run_consumers):
    c = trader
    r = c.put("/api/breakers/config/daily_loss_limit", json={"limit": "300"})
    assert r.status_code == 200
    closed = round_trip(c, "100.00", "80.00")        # -200
    assert closed["realized_pnl"].startswith("-200")
    run_consumers(c.app)
    order = place(c)
    assert execute(c, order).status_code == 201
    round_trip(c, "100.00", "85.00")                 # -150: daily -350
    order = place(c)                                 # placed before the loss reaches the breakers
    run_consumers(c.app)
    r = _new_order(c)                                # HALTED: no new order either
    assert r.status_code == 403 and [v["source"] for v in r.json["vetoes"]] == ["daily_loss_limit"]
    r = execute(c, order)
    assert r.status_code == 403 and r.json["code"] == "order_vetoed"
    assert [v["source"] for v in r.json["vetoes"]] == ["daily_loss_limit"]
    assert "daily_loss_limit" in r.json["message"]
    assert c.get(f"/api/orders/{order}").json["status"] == "pending", "a vetoed order stays pending"
    # The kill switch of orders says why too; releasing it leaves the breaker in charge.
    c.post("/api/breakers/kill-switch", json={"kind": "orders", "reason": "stop for today"})
    r = execute(c, order)
    assert [v["source"] for v in r.json["vetoes"]] == ["kill_switch:orders", "daily_loss_limit"]
    c.post("/api/breakers/kill-switch/release", json={"kind": "orders", "reason": "ok"})
    assert c.post("/api/breakers/daily_loss_limit/clear", json={"reason": "reviewed"}).status_code == 200
    assert execute(c, order).status_code == 201


def test_slippage_of_real_executions_trips_the_anomaly_breaker(trader, run_consumers):
    c = trader
    c.put("/api/breakers/config/slippage_anomaly", json={"limit": "0.10"})
    for _ in range(10):
        assert execute(c, place(c, "100.00", 1), fill_price="100.25").status_code == 201
    run_consumers(c.app)
    st = c.get("/api/breakers/status").json
    b = next(b for b in st["breakers"] if b["name"] == "slippage_anomaly")
    assert (b["tripped"], b["value"]) == (True, "0.250000")
    assert st["scoring_mode"] == "rules_only" and st["trading_state"]["state"] == "ACTIVE"


def test_order_rate_over_http(trader, monkeypatch):
    from plugins.breakers import service
    frozen = dt.datetime.now(dt.timezone.utc)
    monkeypatch.setattr(service, "now", lambda: frozen)   # all three in the same second
    c = trader
    c.put("/api/breakers/config/order_rate", json={"limit": "2"})
    orders = [place(c) for _ in range(3)]
    assert [execute(c, o).status_code for o in orders[:2]] == [201, 201]
    r = execute(c, orders[2])
    assert r.status_code == 403 and [v["source"] for v in r.json["vetoes"]] == ["order_rate"]
    monkeypatch.setattr(service, "now", lambda: frozen + dt.timedelta(seconds=1))
    assert execute(c, orders[2]).status_code == 201


def test_order_rate_holds_on_a_real_server_under_concurrent_executes(trader, stack_config, tmp_path):
    """`tradeloop serve` (gevent) on this stack's database; threads fire executes at it; the
    committed executions (tradelog's filled orders) never exceed L in any one-second window."""
    import os
    import subprocess
    import sys
    import threading
    import time

    import requests

    from tests.breakers.test_order_rate import max_in_any_window
    from tests.conftest import free_port, wait_port

    c, limit = trader, 5
    assert c.put("/api/breakers/config/order_rate", json={"limit": str(limit)}).status_code == 200
    orders = [place(c, qty=1) for _ in range(12)]
    port = free_port()
    env = {**os.environ, "DATABASE_URL": stack_config["DATABASE_URL"], "TRADELOOP_PLUGINS": "tradelog,breakers",
           "SECRET_KEY": "e2e"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    if stack_config.get("REDIS_URL"):
        env["REDIS_URL"] = stack_config["REDIS_URL"]
    else:
        env.pop("REDIS_URL", None)
    exe = os.path.join(os.path.dirname(sys.executable), "tradeloop")
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([exe, "serve", "--port", str(port), "--no-migrate", "--no-workers"], env=env,
                            stdout=log, stderr=log)
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        codes: list[int] = []
        queue = list(orders)
        lock = threading.Lock()

        def worker():
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {c.token}"
            while True:
                with lock:
                    if not queue:
                        return
                    oid = queue.pop()
                r = s.post(f"{base}/api/orders/{oid}/execute", json={}, timeout=30)
                codes.append(r.status_code)
                if r.status_code == 403:
                    assert [v["source"] for v in r.json()["vetoes"]] == ["order_rate"]
                    time.sleep(0.05)
                    with lock:
                        queue.append(oid)  # retry later
        threads = [threading.Thread(target=worker) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        proc.terminate()
        proc.wait(10)
    assert set(codes) <= {201, 403} and codes.count(201) == len(orders)
    assert codes.count(403) > 0
    assert all(c.get(f"/api/orders/{o}").json["status"] == "filled" for o in orders)
    import sqlalchemy as sa
    from plugins.breakers.tables import order_log
    with c.app.extensions["tradeloop"].db.transaction() as conn:
        rows = conn.execute(sa.select(order_log).where(order_log.c.user_id == c.user.id)).fetchall()
    assert sorted(r.order_id for r in rows) == sorted(orders), "one logged execution per filled order"
    assert max_in_any_window([r.executed_at for r in rows]) <= limit


def _new_order(c):
    return c.post("/api/orders", json={"position_template": {"symbol": "XYZ", "legs": [
        {"instrument_type": "stock", "quantity": 1}]}, "limit_price": "10.00"}, idem=str(uuid.uuid4()))


def test_the_orders_kill_switch_refuses_new_orders_not_only_executions(trader, app_factory, new_client):
    """docs/breakers.md: `kind: orders` refuses every new order. POST /api/orders used to answer
    201 with the switch engaged (only execute was refused)."""
    c = trader
    pending = place(c)  # created before the switch
    r = c.post("/api/breakers/kill-switch", json={"kind": "orders", "reason": "desk drill"})
    assert r.status_code == 200, r.json
    r = _new_order(c)
    assert r.status_code == 403 and r.json["code"] == "order_vetoed", r.json
    assert [v["source"] for v in r.json["vetoes"]] == ["kill_switch:orders"]
    assert c.get("/api/orders/active").json == [c.get(f"/api/orders/{pending}").json]  # nothing was created
    assert execute(c, pending).status_code == 403
    c.post("/api/breakers/kill-switch/release", json={"kind": "orders", "reason": "drill over"})
    assert _new_order(c).status_code == 201
    assert execute(c, pending).status_code == 201
    # a deployment-wide switch (admin) refuses everyone's new orders
    app = app_factory(["tradelog", "breakers"])
    admin, other = new_client(app, admin=True), new_client(app)
    assert admin.post("/api/breakers/kill-switch", json={"kind": "orders", "reason": "halt all",
                                                         "scope": "deployment"}).status_code == 200
    try:
        assert _new_order(other).status_code == 403
    finally:
        admin.post("/api/breakers/kill-switch/release", json={"kind": "orders", "reason": "resume",
                                                              "scope": "deployment"})
    assert _new_order(other).status_code == 201


def test_creating_orders_neither_counts_nor_hits_the_order_rate(trader, monkeypatch):
    from plugins.breakers import service
    frozen = dt.datetime.now(dt.timezone.utc)
    monkeypatch.setattr(service, "now", lambda: frozen)
    c = trader
    c.put("/api/breakers/config/order_rate", json={"limit": "1"})
    orders = [place(c) for _ in range(3)]  # three creations in one second: all accepted
    assert execute(c, orders[0]).status_code == 201  # and the first execution still fits
    assert execute(c, orders[1]).status_code == 403
