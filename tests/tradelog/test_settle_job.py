"""Settling expired legs as a scheduled job (issue 16): the schedule fires 15 minutes after each
trading day's close (exchange calendar), and the job settles what is due — by hand:
long 1 SPX 5800 call @ 40 (March 2025 monthly, AM-settled at the open of Friday 2025-03-21,
13:30 UTC), SET 5850.25 -> expires at intrinsic 50.25: realized (50.25 - 40) x 100 = 1,025."""
from __future__ import annotations

import datetime as dt

from tests.tradelog.conftest import key, opt

UTC = dt.timezone.utc


def test_settlement_runs_follow_the_exchange_calendar():
    from plugins.tradelog.jobs import next_settlement_run
    # Thursday 2025-07-03 closes early (13:00 New York = 17:00 UTC); Friday 07-04 is a holiday
    t = dt.datetime(2025, 7, 3, 14, 0, tzinfo=UTC)
    got = []
    for _ in range(2):
        t = next_settlement_run(t)
        got.append(t)
    assert got == [dt.datetime(2025, 7, 3, 17, 15, tzinfo=UTC), dt.datetime(2025, 7, 7, 20, 15, tzinfo=UTC)]


def test_the_schedule_settles_expired_legs_after_the_settlement_moment(tl_app, tl, new_client):
    ext = tl_app.extensions["tradeloop"]
    spx = tl.create([opt("2025-03-21", 5800, "call", 1)])
    tl.fill(spx["id"], spx["legs"][0]["id"], "40.00", 1, at="2025-03-03T15:00:00Z")
    r = tl.c.put("/api/tradelog/settlement-prices", idem=key(), json={
        "underlying": "I:SPX", "expiry": "2025-03-21", "settlement_time": "AM", "price": "5850.25"})
    assert r.status_code == 200, r.json
    sched = ext.jobs.schedule
    # a fake clock, on a worker that has been ticking since 19:00 UTC: 20:10 is before the run
    # (the 20:00 close + 15 min), 20:20 after it
    sched._scanned["tradelog.settle_expired"] = dt.datetime(2025, 3, 21, 19, 0, tzinfo=UTC)
    before = [j for j in sched.tick(dt.datetime(2025, 3, 21, 20, 10, tzinfo=UTC))]
    after = sched.tick(dt.datetime(2025, 3, 21, 20, 20, tzinfo=UTC))
    admin = new_client(tl_app, admin=True)
    runs = [admin.get(f"/api/jobs/{j}").json for j in before + after]
    mine = [j for j in runs if j["kind"] == "tradelog.settle_expired"]
    assert [j["schedule"] for j in mine] == ["tradelog.settle_expired"] and mine[0]["id"] in after
    from app.jobs.tables import jobs
    import sqlalchemy as sa
    with ext.db.read() as c:
        key_ = c.execute(sa.select(jobs.c.schedule_key).where(jobs.c.id == mine[0]["id"])).scalar()
    assert key_ == "tradelog.settle_expired@2025-03-21T20:15:00.000Z"
    ext.jobs.run_pending()
    done = admin.get(f"/api/jobs/{mine[0]['id']}").json
    assert done["state"] == "succeeded", done
    assert spx["id"] in [x["position_id"] for x in done["result"]["settled"]]
    assert tl.get(spx["id"])["realized_pnl"] == "1025.0000"
