"""One truth across plugins: riskgraph's position analysis (``POST
/api/risk-graph/positions/{id}/analyze``, which pulls the trade log's snapshot over HTTP)
and the snapshot agree on net debit, max profit and max loss of what is **open**, with one
sign convention (max loss is a P&L, negative), after a partial close, an assignment and a
roll. A real ``tradeloop serve`` runs both plugins on this test's stack; the two plugins
only talk through the published HTTP contract."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest
import requests

from tests.conftest import ROOT, free_port, make_user, wait_port
from tests.tradelog.conftest import day

_servers: dict = {}
_urls: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _stop_servers():
    yield
    for proc in _servers.values():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    _servers.clear()
    _urls.clear()


@pytest.fixture
def both(app_factory, stack_config):
    """(base URL, a signed-in requests session) on a server running tradelog + riskgraph."""
    app = app_factory(["tradelog", "riskgraph"])  # migrates both branches
    key = stack_config["DATABASE_URL"]
    if key not in _servers:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
        env.update(DATABASE_URL=key, TRADELOOP_PLUGINS="tradelog,riskgraph", SECRET_KEY="test-secret")
        if stack_config.get("REDIS_URL"):
            env["REDIS_URL"] = stack_config["REDIS_URL"]
        tradeloop = os.path.join(os.path.dirname(sys.executable), "tradeloop")
        proc = subprocess.Popen([tradeloop, "serve", "--port", str(port), "--no-migrate", "--no-workers"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _servers[key] = proc
        wait_port(port)
        _urls[key] = f"http://127.0.0.1:{port}"
    base = _urls[key]
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {make_user(app).token}"
    return base, s


def call(both, method, path, body=None, if_match=None, ok=(200, 201)):
    base, s = both
    h = {"If-Match": str(if_match)} if if_match is not None else {}
    r = s.request(method, base + path, json=body, headers=h, timeout=30)
    assert r.status_code in ok, (path, r.status_code, r.text)
    return r.json()


def fill(both, pid, leg_id, price, qty, at, fees="0"):
    return call(both, "POST", f"/api/positions/{pid}/fills",
                {"leg_id": leg_id, "price": price, "quantity": qty, "fees": fees, "occurred_at": at})


def agree(both, pid, expected):
    """The snapshot's figures and riskgraph's, against the values computed by hand."""
    m = call(both, "GET", f"/api/positions/{pid}/snapshot")["metadata"]
    art = call(both, "POST", f"/api/risk-graph/positions/{pid}/analyze", {"spot": 100, "iv": 0.3})["summary"]
    for name, value in expected.items():
        assert (m[name] if m[name] is None else Decimal(m[name])) == value, (name, m[name], value)
        got = art[name]
        if value is None:
            assert got is None and art[f"{name}_unbounded"], (name, got)
        else:
            assert got == pytest.approx(float(value), abs=0.01), (name, got, value)


def test_partial_close(both):
    """Sell 6 XYZ 80 puts @ 1.10, buy back 2 @ 0.40 (by hand, what is open: 4 short puts):
    net debit -4 x 1.10 x 100 = -440; max profit 440; max loss 440 - 80 x 400 = -31,560."""
    p = call(both, "POST", "/api/positions", {"symbol": "XYZ", "legs": [
        {"instrument_type": "option", "expiry": day(30), "strike": "80", "right": "put", "quantity": -6}]})
    leg = p["legs"][0]["id"]
    fill(both, p["id"], leg, "1.10", -6, "2026-01-05T15:00:00Z", fees="3.90")
    fill(both, p["id"], leg, "0.40", 2, "2026-01-06T15:00:00Z", fees="1.30")
    agree(both, p["id"], {"net_debit": Decimal("-440"), "max_profit": Decimal("440"),
                          "max_loss": Decimal("-31560")})


def test_assignment(both):
    """Short XYZ 50 put @ 2.00 + long XYZ 45 put @ 0.50 (a bull put vertical); the short put
    is assigned: 100 shares at 50 arrive, the long put stays. What is open: 100 shares (5,000)
    and the long put (50): net debit 5,050; max loss at XYZ <= 45: 4,500 + 0 - 5,050 = -550;
    max profit unbounded (the shares)."""
    exp = day(30)
    p = call(both, "POST", "/api/positions", {"symbol": "XYZ", "legs": [
        {"instrument_type": "option", "expiry": exp, "strike": "50", "right": "put", "quantity": -1},
        {"instrument_type": "option", "expiry": exp, "strike": "45", "right": "put", "quantity": 1}]})
    short, long_ = (x["id"] for x in p["legs"])
    fill(both, p["id"], short, "2.00", -1, "2026-01-05T15:00:00Z")
    f = fill(both, p["id"], long_, "0.50", 1, "2026-01-05T15:00:00Z")
    call(both, "POST", f"/api/positions/{p['id']}/legs/{short}/settle", {"kind": "assignment"},
         if_match=f["position"]["version"])
    agree(both, p["id"], {"net_debit": Decimal("5050"), "max_profit": None, "max_loss": Decimal("-550")})


def test_roll(both):
    """An XYZ 100/105 call vertical (long @ 3.00, short @ 1.00) rolls its short call up: buy
    it back @ 2.50 and sell a 110 call @ 1.20 in the new position. The old position keeps the
    long call (a partial roll): net debit 300, max loss -300, max profit unbounded. The new
    position holds the short 110 call alone: net debit -120, max profit 120, max loss
    unbounded."""
    exp = day(30)
    p = call(both, "POST", "/api/positions", {"symbol": "XYZ", "legs": [
        {"instrument_type": "option", "expiry": exp, "strike": "100", "right": "call", "quantity": 1},
        {"instrument_type": "option", "expiry": exp, "strike": "105", "right": "call", "quantity": -1}]})
    long_, short = (x["id"] for x in p["legs"])
    fill(both, p["id"], long_, "3.00", 1, "2026-01-05T15:00:00Z")
    f = fill(both, p["id"], short, "1.00", -1, "2026-01-05T15:00:00Z")
    r = call(both, "POST", f"/api/positions/{p['id']}/roll", {
        "occurred_at": "2026-01-06T15:00:00Z", "close": [{"leg_id": short, "price": "2.50"}],
        "open": [{"instrument_type": "option", "expiry": exp, "strike": "110", "right": "call", "quantity": -1,
                  "price": "1.20"}]}, if_match=f["position"]["version"])
    agree(both, p["id"], {"net_debit": Decimal("300"), "max_profit": None, "max_loss": Decimal("-300")})
    agree(both, r["to"]["id"], {"net_debit": Decimal("-120"), "max_profit": Decimal("120"), "max_loss": None})


def test_settlement_roll_and_journal_events_reach_sse(both):
    """LegSettled, PositionRolled and JournalEntryCreated arrive on /sse/trade-log (live,
    in order, with their event_seq as the SSE id)."""
    from tests.sse.conftest import SSEClient
    base, s = both
    stream = SSEClient(base.removeprefix("http://"), "/sse/trade-log?last_seq=0",
                       token=s.headers["Authorization"].split()[1])
    assert stream.status == 200
    p = call(both, "POST", "/api/positions", {"symbol": "XYZ", "legs": [
        {"instrument_type": "option", "expiry": "2025-06-20", "strike": "50", "right": "put", "quantity": -1},
        {"instrument_type": "option", "expiry": "2025-06-20", "strike": "45", "right": "put", "quantity": 1}]})
    short, long_ = (x["id"] for x in p["legs"])
    fill(both, p["id"], short, "2.00", -1, "2025-06-02T15:00:00Z")
    f = fill(both, p["id"], long_, "0.50", 1, "2025-06-02T15:00:00Z")
    call(both, "POST", f"/api/positions/{p['id']}/legs/{long_}/settle", {"kind": "expiration"},
         if_match=f["position"]["version"])
    q = call(both, "POST", "/api/positions", {"symbol": "XYZ", "legs": [
        {"instrument_type": "option", "expiry": day(30), "strike": "50", "right": "put", "quantity": -1}]})
    g = fill(both, q["id"], q["legs"][0]["id"], "2.00", -1, "2026-01-05T15:00:00Z")
    call(both, "POST", f"/api/positions/{q['id']}/roll", {
        "occurred_at": "2026-01-06T15:00:00Z", "close": [{"leg_id": q["legs"][0]["id"], "price": "1.00"}],
        "open": [{"instrument_type": "option", "expiry": day(60), "strike": "48", "right": "put", "quantity": -1,
                  "price": "1.50"}]}, if_match=g["position"]["version"])
    call(both, "POST", "/api/journal_entries", {"position_id": q["id"], "object_of_reflection": "rolled down",
                                                "phase": "management"})
    types, ids = [], []
    while "JournalEntryCreated" not in types:
        m = stream.next(timeout=15)
        assert m is not None, types
        types.append(m["data"]["type"])
        ids.append(m["id"])
    stream.close()
    assert types == ["PositionCreated", "FillRecorded", "FillRecorded", "LegSettled", "PositionCreated",
                     "FillRecorded", "FillRecorded", "PositionClosed", "PositionCreated", "FillRecorded",
                     "PositionRolled", "JournalEntryCreated"]
    assert ids == sorted(ids)


def test_pattern_a_works_for_a_browser_session(both):
    """A browser session (the cookie from POST /api/auth/login, no Authorization header) may
    call every route, this one too: riskgraph forwards the session to the trade log (a
    same-origin request of this server to itself) instead of nothing, which the trade log
    answered 401 and the caller saw as 503 tradelog_unavailable. The artifact is linked back
    under the same session. By hand: one long XYZ 100 call bought @ 2.00 is a net debit of 200."""
    base, bearer = both
    p = call(both, "POST", "/api/positions", {"symbol": "XYZ", "legs": [
        {"instrument_type": "option", "expiry": day(30), "strike": "100", "right": "call", "quantity": 1}]})
    fill(both, p["id"], p["legs"][0]["id"], "2.00", 1, "2026-01-05T15:00:00Z")
    browser = requests.Session()
    login = browser.post(f"{base}/api/auth/login", json={"token": bearer.headers["Authorization"][7:]},
                         headers={"Origin": base}, timeout=10)
    assert login.status_code == 200 and browser.cookies.get("tradeloop_session"), login.text
    r = browser.post(f"{base}/api/risk-graph/positions/{p['id']}/analyze", json={"spot": 100, "iv": 0.3},
                     headers={"Origin": base}, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["summary"]["net_debit"] == pytest.approx(200, abs=1e-6)
    art_id = r.json()["id"]
    r.close()
    deadline = time.monotonic() + 10   # the reference is posted after the response
    while time.monotonic() < deadline:
        links = call(both, "GET", f"/api/positions/{p['id']}/risk-artifact")
        if links:
            break
        time.sleep(0.1)
    assert [x["artifact_id"] for x in links] == [art_id]
