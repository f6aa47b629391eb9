"""RiskGraph <-> TradeLog (seed TradeLog plan, section 5), never importing the trade log.

Pattern A: this process runs riskgraph alone; the trade log runs in a real ``tradeloop
serve`` subprocess on the same database, and riskgraph pulls the snapshot over HTTP and
posts the artifact reference back. Pattern B: events on ``tradelog.events`` — emitted here in
the agreed shape, and emitted by the real trade log when it is installed — make riskgraph
recompute, store an artifact and emit RiskArtifactComputed; redelivery changes nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import requests

from tests.conftest import ROOT, free_port, wait_port
from tests.riskgraph.helpers import API, events

HAS_TRADELOG = os.path.exists(os.path.join(ROOT, "plugins", "tradelog", "plugin.py"))
needs_tradelog = pytest.mark.skipif(not HAS_TRADELOG, reason="plugins/tradelog/plugin.py is not there yet")
VAL = "2031-01-03"
EXP = "2031-01-17"
_servers: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _stop_servers():
    yield
    for proc, log in _servers.values():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    _servers.clear()


@pytest.fixture
def tradelog_url(app_factory, stack_config):
    """A real gevent server (``tradeloop serve``) with tradelog + riskgraph on this stack's
    database, without bus workers (this test process runs the consumers)."""
    app_factory(["tradelog", "riskgraph"])  # migrates both branches
    key = stack_config["DATABASE_URL"]
    if key not in _urls:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
        env.update(DATABASE_URL=key, TRADELOOP_PLUGINS="tradelog,riskgraph", SECRET_KEY="test-secret")
        if stack_config.get("REDIS_URL"):
            env["REDIS_URL"] = stack_config["REDIS_URL"]
        log = open(os.devnull, "wb")
        tradeloop = os.path.join(os.path.dirname(sys.executable), "tradeloop")
        proc = subprocess.Popen([tradeloop, "serve", "--port", str(port), "--no-migrate", "--no-workers"],
                                cwd=ROOT, env=env, stdout=log, stderr=log)
        _servers[key] = (proc, log)
        wait_port(port)
        _urls[key] = f"http://127.0.0.1:{port}"
    return _urls[key]


_urls: dict = {}


def _create_position(base, token):
    """A 6000/6010 call vertical bought for 7.50 - 4.00 = 3.50, over the trade log's HTTP API."""
    h = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{base}/api/positions", headers=h, timeout=10, json={"symbol": "SPX", "legs": [
        {"instrument_type": "option", "right": "call", "strike": "6000", "expiry": EXP, "quantity": 1},
        {"instrument_type": "option", "right": "call", "strike": "6010", "expiry": EXP, "quantity": -1}]})
    assert r.status_code == 201, r.text
    pos = r.json()
    for leg, price in zip(pos["legs"], ("7.50", "4.00")):
        f = requests.post(f"{base}/api/positions/{pos['id']}/fills", headers=h, timeout=10, json={
            "leg_id": leg["id"], "price": price, "quantity": leg["quantity"], "occurred_at": "2026-01-05T15:00:00Z"})
        assert f.status_code == 201, f.text
    return pos["id"]


def _check_vertical_summary(summary):
    assert summary["net_debit"] == pytest.approx(350, abs=1e-6)          # (7.50 - 4.00) x 100
    assert summary["max_profit"] == pytest.approx(650, abs=1e-6)         # (10 - 3.50) x 100
    assert summary["max_loss"] == pytest.approx(-350, abs=1e-6)
    assert summary["breakevens"] == [pytest.approx(6003.5, abs=1e-6)]     # 6000 + 3.50
    assert summary["unpriced_legs"] == []


@needs_tradelog
def test_pattern_a_pulls_the_snapshot_from_another_process(app_factory, new_client, tradelog_url):
    app = app_factory(["riskgraph"], RISKGRAPH_TRADELOG_URL=tradelog_url)   # tradelog is not in this app
    a, b = new_client(app), new_client(app)
    pid = _create_position(tradelog_url, a.token)
    body = {"spot": 6000, "iv": 0.2, "valuation_date": VAL}
    r = a.post(f"{API}/positions/{pid}/analyze", json=body)
    assert r.status_code == 201, r.json
    art = r.json
    r.close()  # the reference is posted to the trade log once the response is done
    assert art["position_id"] == pid and art["source"] == "snapshot" and art["source_version"] == 3
    assert art["reused"] is False and art["link"]["url"].endswith(f"/api/positions/{pid}/risk-artifact")
    _check_vertical_summary(art["summary"])
    assert len(art["curves"]["grid"]) == 201
    h = {"Authorization": f"Bearer {a.token}"}
    links = requests.get(f"{tradelog_url}/api/positions/{pid}/risk-artifact", headers=h, timeout=10).json()
    assert [link["artifact_id"] for link in links] == [art["id"]]
    (ev,) = [e for e in events(app, a.user.id, types={"RiskArtifactComputed"})]
    assert ev.payload["artifact_id"] == art["id"] and ev.payload["position_id"] == pid
    assert ev.payload["source_version"] == 3 and ev.aggregate_id == art["id"]

    again = a.post(f"{API}/positions/{pid}/analyze", json=body)             # same snapshot, same inputs
    assert again.status_code == 200 and again.json["reused"] and again.json["id"] == art["id"]
    assert len(events(app, a.user.id, types={"RiskArtifactComputed"})) == 1
    listed = a.get(f"{API}/artifacts?position_id={pid}").json
    assert [x["id"] for x in listed] == [art["id"]] and "curves" not in listed[0]
    assert a.get(f"{API}/artifacts/{art['id']}").json["curves"]["expiry_pnl"]

    # user B: the trade log answers 404 for A's position, and A's artifacts stay invisible
    assert b.post(f"{API}/positions/{pid}/analyze", json=body).status_code == 404
    assert b.get(f"{API}/artifacts?position_id={pid}").json == []
    assert b.get(f"{API}/artifacts/{art['id']}").status_code == 404


def test_pattern_a_when_the_trade_log_is_unreachable(app_factory, new_client):
    app = app_factory(["riskgraph"], RISKGRAPH_TRADELOG_URL=f"http://127.0.0.1:{free_port()}")
    a = new_client(app)
    pid = str(uuid.uuid4())
    r = a.post(f"{API}/positions/{pid}/analyze", json={"spot": 6000, "iv": 0.2})
    assert r.status_code == 503 and r.json["code"] == "tradelog_unavailable"
    assert a.get(f"{API}/artifacts").json == []
    r = a.post(f"{API}/positions/{pid}/analyze", json={"spot": -1})
    assert r.status_code == 422 and "spot" in r.json["errors"]["json"]


def _emit(app, user_id, type_, pid, version, payload):
    from bus import outbox
    with app.extensions["tradeloop"].db.transaction() as c:
        outbox.emit(c, "tradelog.events", type_, aggregate_type="position", aggregate_id=pid,
                    aggregate_version=version, payload=payload, user_id=user_id)


def test_pattern_b_recomputes_from_events_in_the_agreed_shape(app_factory, new_client, run_consumers):
    """riskgraph alone (tradelog disabled): events shaped per the contract drive it."""
    app = app_factory(["riskgraph"])
    a, b = new_client(app), new_client(app)
    assert a.put(f"{API}/market-inputs/SPX", json={"spot": 6000, "iv": 0.2}).status_code == 200
    pid, long_id, short_id = (str(uuid.uuid4()) for _ in range(3))
    legs = [{"id": long_id, "position_id": pid, "instrument_type": "option", "expiry": EXP, "strike": "6000.00",
             "right": "call", "quantity": 1, "multiplier": 100},
            {"id": short_id, "position_id": pid, "instrument_type": "option", "expiry": EXP, "strike": "6010.00",
             "right": "call", "quantity": -1, "multiplier": 100}]
    position = {"id": pid, "user_id": a.user.id, "status": "planned", "symbol": "SPX", "underlying": "SPX",
                "version": 1, "legs": legs}
    _emit(app, a.user.id, "PositionCreated", pid, 1, {"position": position})
    run_consumers(app)
    first = a.get(f"{API}/artifacts?position_id={pid}").json
    assert len(first) == 1 and first[0]["source"] == "events" and first[0]["source_version"] == 1
    assert sorted(first[0]["summary"]["unpriced_legs"]) == sorted([long_id, short_id])  # no fills yet: model value

    for version, (leg, price, qty) in enumerate(((long_id, "7.50", 1), (short_id, "4.00", -1)), start=2):
        fill = {"id": str(uuid.uuid4()), "leg_id": leg, "price": price, "quantity": qty, "fees": "0.65",
                "occurred_at": "2031-01-03T15:00:00.000Z", "recorded_at": "2031-01-03T15:00:01.000Z"}
        _emit(app, a.user.id, "FillRecorded", pid, version, {"position_id": pid, "fill": fill, "slippage": None})
    run_consumers(app)
    arts = a.get(f"{API}/artifacts?position_id={pid}").json
    assert [x["source_version"] for x in arts] == [3, 2, 1]
    _check_vertical_summary(arts[0]["summary"])
    computed = events(app, a.user.id, types={"RiskArtifactComputed"})
    assert [e.payload["source_version"] for e in computed] == [1, 2, 3]
    assert computed[-1].payload["artifact_id"] == arts[0]["id"]
    assert computed[-1].payload["summary"]["max_profit"] == pytest.approx(650, abs=1e-6)

    # redelivery (the group's position moved back, as after a crash) is a no-op
    from bus import outbox
    runner = app.extensions["tl_test_runners"]["riskgraph"]
    tradelog_events = events(app, a.user.id, stream="tradelog.events")
    with app.extensions["tradeloop"].db.transaction() as c:
        outbox.set_cursor(c, "group:riskgraph", "tradelog.events", tradelog_events[0].event_seq - 1)
    runner.consumer.rewind()
    skipped = runner.stats.skipped_duplicates
    assert run_consumers(app) >= 3
    assert runner.stats.skipped_duplicates - skipped >= 3
    assert len(a.get(f"{API}/artifacts?position_id={pid}").json) == 3
    assert len(events(app, a.user.id, types={"RiskArtifactComputed"})) == 3

    # a PositionAdjusted (full representation) replaces the legs and keeps the fills
    adjusted = dict(position, version=4, status="open", legs=legs + [
        {"id": str(uuid.uuid4()), "position_id": pid, "instrument_type": "option", "expiry": EXP,
         "strike": "5990.00", "right": "put", "quantity": 0, "multiplier": 100}])
    _emit(app, a.user.id, "PositionAdjusted", pid, 4, {"position": adjusted, "change": "legs_added"})
    run_consumers(app)
    latest = a.get(f"{API}/artifacts?position_id={pid}").json[0]
    assert latest["source_version"] == 4
    _check_vertical_summary(latest["summary"])
    # events of A's position never show up for B
    assert b.get(f"{API}/artifacts").json == []
    assert b.get(f"{API}/artifacts/{latest['id']}").status_code == 404


def test_pattern_b_without_market_inputs_keeps_the_book_only(app_factory, new_client, run_consumers):
    app = app_factory(["riskgraph"])
    a = new_client(app)
    pid = str(uuid.uuid4())
    position = {"id": pid, "status": "open", "symbol": "NOQUOTE", "version": 1, "legs": [
        {"id": str(uuid.uuid4()), "instrument_type": "option", "expiry": EXP, "strike": "100", "right": "put",
         "quantity": 1}]}
    _emit(app, a.user.id, "PositionCreated", pid, 1, {"position": position})
    run_consumers(app)
    assert a.get(f"{API}/artifacts?position_id={pid}").json == []
    assert a.get(f"{API}/market-inputs/NOQUOTE").status_code == 404


@needs_tradelog
def test_pattern_b_with_the_real_trade_log(app_factory, new_client, run_consumers):
    """Both plugins in one app, still only through the bus: tradelog's events make riskgraph
    compute, and tradelog keeps the reference from RiskArtifactComputed."""
    app = app_factory(["tradelog", "riskgraph"])
    a = new_client(app)
    a.put(f"{API}/market-inputs/SPX", json={"spot": 6000, "iv": 0.2})
    r = a.post("/api/positions", json={"symbol": "SPX", "legs": [
        {"instrument_type": "option", "right": "call", "strike": "6000", "expiry": EXP, "quantity": 1},
        {"instrument_type": "option", "right": "call", "strike": "6010", "expiry": EXP, "quantity": -1}]})
    assert r.status_code == 201, r.json
    pid = r.json["id"]
    for leg, price in zip(r.json["legs"], ("7.50", "4.00")):
        f = a.post(f"/api/positions/{pid}/fills", json={"leg_id": leg["id"], "price": price,
                                                         "quantity": leg["quantity"],
                                                         "occurred_at": "2026-01-05T15:00:00Z"})
        assert f.status_code == 201, f.json
    run_consumers(app)
    arts = a.get(f"{API}/artifacts?position_id={pid}").json
    assert arts and arts[0]["source_version"] == 3
    _check_vertical_summary(arts[0]["summary"])
    linked = {x["artifact_id"] for x in a.get(f"/api/positions/{pid}/risk-artifact").json}
    assert arts[0]["id"] in linked


def test_pattern_a_never_follows_the_clients_host_header(app_factory, new_client, monkeypatch):
    """Without RISKGRAPH_TRADELOG_URL the trade log is this server itself, at the address its
    WSGI server listens on (SERVER_NAME/SERVER_PORT) — never the request's ``Host`` header,
    which any caller chooses: following it made the server send a GET (with the caller's
    Authorization header) to any host:port the caller named (SSRF; found by pointing Host at a
    local listener). Here the listener must see no request at all; the test client's own
    address (localhost:80) has no trade log, so the answer is 503 naming that URL."""
    import http.server
    import threading

    monkeypatch.delenv("RISKGRAPH_TRADELOG_URL", raising=False)
    seen = []

    class Trap(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    trap = http.server.HTTPServer(("127.0.0.1", 0), Trap)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    try:
        app = app_factory(["riskgraph"])
        a = new_client(app)
        pid = str(uuid.uuid4())
        r = a.post(f"{API}/positions/{pid}/analyze", json={"spot": 6000, "iv": 0.2},
                   headers={"Host": f"127.0.0.1:{trap.server_address[1]}"})
    finally:
        trap.shutdown()
        trap.server_close()
    assert seen == []
    assert r.status_code == 503 and r.json["code"] == "tradelog_unavailable", r.json
    assert "http://localhost:80/api/positions/" in r.json["message"]
