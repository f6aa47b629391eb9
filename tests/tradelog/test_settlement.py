"""Settlement as first-class events: expiration (worthless / in the money, cash), exercise
and assignment (physical, into a stock leg), idempotency, If-Match, refusals, and the
end-of-day job (service function and CLI) — values by hand."""
from __future__ import annotations

import datetime as dt
import json

from tests.tradelog.conftest import day, events_of, key, opt

UTC = dt.timezone.utc


def settle(tl, pid, leg_id, body, version=None, idem=None):
    version = tl.get(pid)["version"] if version is None else version
    return tl.c.post(f"/api/positions/{pid}/legs/{leg_id}/settle", json=body, if_match=version, idem=idem or key())


def test_cash_settled_am_index_option_expires_at_intrinsic_against_the_settlement_value(tl_app, tl):
    """Long 1 SPX 5800 call @ 40.00 (fees 1.10), the March 2025 monthly: AM-settled, so it
    settles at the open of Friday 2025-03-21 (09:30 New York = 13:30 UTC, EDT) against the
    SET. With SET = 5850.25: intrinsic 50.25 -> realized (50.25 - 40.00) x 100 - 1.10 = 1,023.90."""
    p = tl.create([opt("2025-03-21", 5800, "call", 1)])
    leg = p["legs"][0]["id"]
    tl.fill(p["id"], leg, "40.00", 1, fees="1.10", at="2025-03-03T15:00:00Z")
    s = tl.snapshot(p["id"])["legs"][0]
    assert (s["settlement_time"], s["settlement_type"], s["settles_at"]) == ("AM", "cash", "2025-03-21T13:30:00.000Z")
    late = tl.c.post(f"/api/positions/{p['id']}/fills", json={
        "leg_id": leg, "price": "49", "quantity": -1, "occurred_at": "2025-03-20T20:30:00Z"}, idem=key())
    assert late.status_code == 422 and "last trade" in late.json["errors"]["json"]["occurred_at"][0]
    r = settle(tl, p["id"], leg, {"kind": "expiration", "settlement_value": "5850.25"})
    assert r.status_code == 201, r.json
    st = r.json["settlement"]
    assert (st["kind"], st["settlement_type"], st["price"], st["settlement_value"], st["occurred_at"]) == \
        ("expiration", "cash", "50.2500", "5850.2500", "2025-03-21T13:30:00.000Z")
    assert r.json["position"]["realized_pnl"] == "1023.9000"
    closed = tl.close(p["id"], closed_at="2025-03-21T14:00:00Z")
    assert closed["realized_pnl"] == "1023.9000"


def test_exercise_delivers_shares_at_the_strike(tl):
    """Long 2 XYZ 100 calls @ 3.00 (fees 1.30), exercised: the calls close at 0 ->
    realized -3.00 x 2 x 100 - 1.30 = -601.30; +200 shares at 100 (cost basis 20,000)."""
    p = tl.create([opt("2025-06-20", 100, "call", 2)], symbol="XYZ", underlying="XYZ")
    leg = p["legs"][0]["id"]
    tl.fill(p["id"], leg, "3.00", 2, fees="1.30", at="2025-06-02T15:00:00Z")
    r = settle(tl, p["id"], leg, {"kind": "exercise", "occurred_at": "2025-06-20T20:00:00Z"})
    assert r.status_code == 201, r.json
    assert r.json["settlement"]["delivered_quantity"] == 200
    assert r.json["position"]["realized_pnl"] == "-601.3000"
    legs = {x["instrument_type"]: x for x in tl.snapshot(p["id"])["legs"]}
    assert (legs["stock"]["open_quantity"], legs["stock"]["cost_basis"]) == (200, "20000.0000")


def test_covered_call_assignment_takes_the_shares_away(tl):
    """Long 100 XYZ @ 95 and short 1 XYZ 100 call @ 1.50 (fees 0.65); the call is assigned:
    it closes at 0 (+150 - 0.65) and the 100 shares leave at 100 (+500): the position is flat
    with realized 649.35, and no new stock leg is made."""
    p = tl.create([{"instrument_type": "stock", "quantity": 100}, opt("2025-06-20", 100, "call", -1)],
                  symbol="XYZ", underlying="XYZ")
    stock, call = (x["id"] for x in p["legs"])
    tl.fill(p["id"], stock, "95", 100, at="2025-06-02T15:00:00Z")
    tl.fill(p["id"], call, "1.50", -1, fees="0.65", at="2025-06-02T15:00:00Z")
    r = settle(tl, p["id"], call, {"kind": "assignment"})
    assert r.status_code == 201, r.json
    assert r.json["settlement"]["delivered_leg_id"] == stock and r.json["settlement"]["delivered_quantity"] == -100
    assert len(r.json["position"]["legs"]) == 2
    assert all(x["open_quantity"] == 0 for x in r.json["position"]["legs"])
    assert r.json["position"]["realized_pnl"] == "649.3500"


def test_settling_is_idempotent_and_needs_if_match(tl_app, tl):
    p = tl.create([opt("2025-06-20", 90, "put", 1)], symbol="XYZ", underlying="XYZ")
    leg = p["legs"][0]["id"]
    tl.fill(p["id"], leg, "1.00", 1, at="2025-06-02T15:00:00Z")
    missing = tl.c.post(f"/api/positions/{p['id']}/legs/{leg}/settle", json={"kind": "expiration"}, idem=key())
    assert missing.status_code == 428
    stale = settle(tl, p["id"], leg, {"kind": "expiration"}, version=1)
    assert stale.status_code == 409 and stale.json["code"] == "version_conflict"
    first = settle(tl, p["id"], leg, {"kind": "expiration"}, version=2)
    assert first.status_code == 201
    again = settle(tl, p["id"], leg, {"kind": "expiration"}, version=2)  # a retry with another key
    assert again.status_code == 200 and again.json == first.json
    other = settle(tl, p["id"], leg, {"kind": "exercise"}, version=3)
    assert other.status_code == 409 and other.json["code"] == "invalid_state"
    assert len([e for e in events_of(tl_app, tl.c.user.id, p["id"]) if e.type == "LegSettled"]) == 1
    listed = tl.c.get(f"/api/positions/{p['id']}/settlements").json
    assert [x["id"] for x in listed] == [first.json["settlement"]["id"]]


def test_refusals_name_the_field(tl):
    p = tl.create([opt("2025-06-20", 100, "call", -2), {"instrument_type": "stock", "quantity": 100},
                   opt(day(20), 100, "put", 1)], symbol="XYZ", underlying="XYZ")
    call, stock, future_put = (x["id"] for x in p["legs"])
    tl.fill(p["id"], call, "2", -2, at="2025-06-02T15:00:00Z")
    tl.fill(p["id"], stock, "99", 100, at="2025-06-02T15:00:00Z")
    tl.fill(p["id"], future_put, "2", 1, at="2025-06-02T15:00:00Z")
    cases = [
        (call, {"kind": "exercise"}, 422, "kind"),                                 # a short option is assigned
        (call, {"kind": "expiration", "settlement_value": "104"}, 422, "kind"),    # ITM physical: not just expired
        (call, {"kind": "assignment", "settlement_value": "95"}, 422, "kind"),     # OTM: it expires
        (call, {"kind": "assignment", "quantity": 3}, 422, "quantity"),            # only 2 are open
        (call, {"kind": "expiration", "occurred_at": "2025-06-20T15:00:00Z"}, 422, "occurred_at"),
        (stock, {"kind": "expiration"}, 422, "leg_id"),
        (future_put, {"kind": "expiration"}, 409, None),                           # not expired yet
    ]
    for leg, body, status, field in cases:
        r = settle(tl, p["id"], leg, body)
        assert r.status_code == status, (body, r.json)
        if field:
            assert field in r.json["errors"]["json"], (body, r.json)
        else:
            assert r.json["code"] == "not_expired" and r.json["settles_at"].startswith(day(20))
    unknown = settle(tl, p["id"], "x" * 36, {"kind": "expiration"})
    assert unknown.status_code == 404
    spx = tl.create([opt("2025-03-21", 5800, "call", 1)])
    tl.fill(spx["id"], spx["legs"][0]["id"], "40", 1, at="2025-03-03T15:00:00Z")
    r = settle(tl, spx["id"], spx["legs"][0]["id"], {"kind": "exercise"})
    assert r.status_code == 422 and "settlement_value" in r.json["errors"]["json"]
    # a partial assignment: 1 of the 2 short calls
    r = settle(tl, p["id"], call, {"kind": "assignment", "quantity": 1})
    assert r.status_code == 201 and r.json["settlement"]["quantity"] == 1
    assert r.json["settlement"]["delivered_quantity"] == -100


def test_settle_expired_job_and_command(tl_app, tl):
    """The end-of-day job, from recorded settlement prices (by hand):
    * XYZ 90 put (long 1 @ 1.00), XYZ settles at 95: OTM -> expired worthless, -100;
      the position is then flat and the job closes it;
    * SPX 5800 call (long 1 @ 40), SET 5850.25 (AM): cash, ITM -> expires at 50.25, +1,025;
    * QQQ 400 call (long 1): no settlement price recorded -> awaits, listed.
    Run again: nothing more to do."""
    from plugins.tradelog import settlement
    xyz = tl.create([opt("2025-06-20", 90, "put", 1)], symbol="XYZ", underlying="XYZ")
    tl.fill(xyz["id"], xyz["legs"][0]["id"], "1.00", 1, at="2025-06-02T15:00:00Z")
    spx = tl.create([opt("2025-03-21", 5800, "call", 1)])
    tl.fill(spx["id"], spx["legs"][0]["id"], "40.00", 1, at="2025-03-03T15:00:00Z")
    qqq = tl.create([opt("2025-06-20", 400, "call", 1)], symbol="QQQ", underlying="QQQ")
    tl.fill(qqq["id"], qqq["legs"][0]["id"], "5.00", 1, at="2025-06-02T15:00:00Z")
    for body in ({"underlying": "XYZ", "expiry": "2025-06-20", "price": "95"},
                 {"underlying": "I:SPX", "expiry": "2025-03-21", "settlement_time": "AM", "price": "5850.25"}):
        r = tl.c.put("/api/tradelog/settlement-prices", json=body, idem=key())
        assert r.status_code == 200, r.json
    seen = []
    with tl_app.extensions["tradeloop"].db.transaction() as conn:
        report = settlement.settle_expired(conn, dt.datetime(2025, 6, 23, tzinfo=UTC), user_id=tl.c.user.id,
                                           progress=lambda fraction, message="": seen.append((fraction, message)))
    assert report["checked"] == 3 and seen[-1] == (1.0, "3 of 3 legs")
    got = {x["position_id"]: (x["kind"], str(x["price"])) for x in report["settled"]}
    assert got == {xyz["id"]: ("expiration", "0.0000"), spx["id"]: ("expiration", "50.2500")}
    assert [x["leg_id"] for x in report["awaiting_settlement_price"]] == [qqq["legs"][0]["id"]]
    assert sorted(report["closed"]) == sorted([xyz["id"], spx["id"]])
    assert tl.get(xyz["id"])["realized_pnl"] == "-100.0000" and tl.get(xyz["id"])["status"] == "closed"
    assert tl.get(spx["id"])["realized_pnl"] == "1025.0000"
    assert tl.get(qqq["id"])["status"] == "open"
    # the command: QQQ's price arrives, the CLI settles it (ITM physical long call -> exercise)
    runner = tl_app.test_cli_runner()
    out = runner.invoke(args=["tradelog", "settlement-price", "QQQ", "2025-06-20", "410", "--user", tl.c.user.name])
    assert out.exit_code == 0, out.output
    out = runner.invoke(args=["tradelog", "settle-expired", "--user", tl.c.user.name, "--at", "2025-06-23T00:00:00Z"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout[out.stdout.index("{"):])
    assert [(x["kind"], x["leg_id"]) for x in report["settled"]] == [("exercise", qqq["legs"][0]["id"])]
    assert report["closed"] == []  # 100 QQQ shares are still held
    out = runner.invoke(args=["tradelog", "settle-expired", "--user", tl.c.user.name, "--at", "2025-06-23T00:00:00Z"])
    assert json.loads(out.stdout[out.stdout.index("{"):])["checked"] == 0


def test_settle_expired_is_a_job_scheduled_after_each_close(tl_app, tl):
    """The schedule runs it 15 minutes after each trading day's close: after Friday
    2025-11-28 17:00 UTC (the day after Thanksgiving closes at 13:00 New York = 18:00 UTC) it
    is 18:15 UTC; after Friday 2025-06-20 21:00 UTC the next is Monday 2025-06-23 20:15 UTC.
    Run as a job, it settles an expired OTM put from its recorded price (-1.00 x 100)."""
    from plugins.tradelog.jobs import next_settlement_run
    assert next_settlement_run(dt.datetime(2025, 11, 28, 17, tzinfo=UTC)) == dt.datetime(2025, 11, 28, 18, 15, tzinfo=UTC)
    assert next_settlement_run(dt.datetime(2025, 6, 20, 21, tzinfo=UTC)) == dt.datetime(2025, 6, 23, 20, 15, tzinfo=UTC)
    jobs = tl_app.extensions["tradeloop"].jobs
    assert {"tradelog.import", "tradelog.settle_expired"} <= set(jobs.kinds)
    p = tl.create([opt("2025-06-20", 90, "put", 1)], symbol="XYZ", underlying="XYZ")
    tl.fill(p["id"], p["legs"][0]["id"], "1.00", 1, at="2025-06-02T15:00:00Z")
    tl.c.put("/api/tradelog/settlement-prices", json={"underlying": "XYZ", "expiry": "2025-06-20", "price": "95"},
             idem=key())
    job = jobs.run_inline("tradelog.settle_expired", {})
    assert job["state"] == "succeeded", job
    mine = [x for x in job["result"]["settled"] if x["position_id"] == p["id"]]
    assert [(x["kind"], x["price"]) for x in mine] == [("expiration", "0.0000")]
    assert tl.get(p["id"])["status"] == "closed" and tl.get(p["id"])["realized_pnl"] == "-100.0000"
