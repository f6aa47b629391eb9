"""The schedule: timing of slots (pure), JOBS_SCHEDULE overrides, and ticks on a fake clock
that submit each slot once and coalesce missed ones (both stacks)."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.hookspecs import ScheduleEntry
from app.jobs.schedule import latest_slot, parse_overrides

UTC = dt.timezone.utc
NOTES = "tests.plugins.notes.plugin"


def t(*args):
    return dt.datetime(*args, tzinfo=UTC)


def test_every_slots_are_aligned_to_the_epoch():
    e = ScheduleEntry("x", "k", every_seconds=300)
    assert latest_slot(e, t(2031, 5, 6, 7, 14, 59), t(2031, 1, 1)) == t(2031, 5, 6, 7, 10)
    assert latest_slot(e, t(2031, 5, 6, 7, 15, 0), t(2031, 1, 1)) == t(2031, 5, 6, 7, 15)


def test_cron_slot_is_the_latest_matching_minute_after_the_last_scan():
    e = ScheduleEntry("x", "k", cron="30 21 * * 1-5")  # 21:30 UTC on weekdays
    # Saturday 2031-05-10 10:00: the latest is Friday 21:30 when scanning from Thursday...
    assert latest_slot(e, t(2031, 5, 10, 10, 0), t(2031, 5, 8)) == t(2031, 5, 9, 21, 30)
    # ...and nothing when the last scan was after it
    assert latest_slot(e, t(2031, 5, 10, 10, 0), t(2031, 5, 9, 22, 0)) is None


def test_moments_slot_coalesces_missed_moments_into_the_latest():
    def daily_2000(after):  # next 20:00 UTC strictly after `after`
        m = after.replace(hour=20, minute=0, second=0, microsecond=0)
        return m if m > after else m + dt.timedelta(days=1)
    e = ScheduleEntry("x", "k", moments=daily_2000)
    assert latest_slot(e, t(2031, 5, 10, 9, 0), t(2031, 5, 7, 12, 0)) == t(2031, 5, 9, 20, 0)
    assert latest_slot(e, t(2031, 5, 9, 19, 59), t(2031, 5, 9, 12, 0)) is None


def test_jobs_schedule_overrides_parse_and_bad_ones_name_the_item():
    assert parse_overrides("a.b=off; c.d=every 90;e.f=cron 0 3 * * *") == {
        "a.b": {"enabled": False},
        "c.d": {"enabled": True, "every_seconds": 90.0, "cron": None, "moments": None},
        "e.f": {"enabled": True, "cron": "0 3 * * *", "every_seconds": None, "moments": None}}
    for bad in ("a.b", "a.b=every -1", "a.b=cron 99 * * * *", "a.b=sometimes"):
        with pytest.raises(ValueError, match="a.b"):
            parse_overrides(bad)


def test_every_declared_cron_line_is_valid_and_a_bad_one_is_named_on_first_use(tmp_path):
    """Cron lines are checked on the schedule's first use (checking imports Huey, which the
    CLI's start-up should not pay for), so every plugin's built-in lines are checked here."""
    from app import create_app
    from app.jobs.schedule import Schedule
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/s.db", "SECRET_KEY": "x",
                      "TRADELOOP_PLUGINS": ["tradelog", "riskgraph", "mlloop", "breakers", NOTES]})
    system = app.extensions["tradeloop"].jobs
    crons = [e for _, e in system.schedule.entries if e.cron]
    assert crons  # (the host's purge and mlloop's nightly checks are cron lines)
    system.schedule.check()
    assert [d["name"] for d in system.schedule.describe()] == [e.name for _, e in system.schedule.entries]
    bad = Schedule(system, [("notes", ScheduleEntry("notes.bad", crons[0].kind, cron="61 * * * *"))], {},
                   catchup_seconds=60)
    with pytest.raises(ValueError, match="notes.bad"):
        bad.active()


def test_ticks_submit_each_slot_once_and_coalesce_missed_slots(app_factory, new_client):
    app = app_factory([NOTES], JOBS_SCHEDULE="notes.count_all=every 60; host.purge_jobs=off",
                      JOBS_SCHEDULE_CATCHUP_SECONDS=3600)
    ext = app.extensions["tradeloop"]
    sched = ext.jobs.schedule
    sched._scanned.clear()
    base = t(2032, 3, 4, 5, 6, 1)
    ids = []
    for seconds in (0, 10, 59, 60, 61, 600):  # slots 05:06, 05:06, 05:06, 05:07, 05:07, 05:16
        ids += sched.tick(base + dt.timedelta(seconds=seconds))
    with ext.db.read() as c:
        keys = c.execute(sa.text("SELECT schedule_key FROM jobs WHERE id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)), {"ids": ids}).scalars().all()
    mine = sorted(k for k in keys if k.startswith("notes.count_all@"))
    assert mine == ["notes.count_all@2032-03-04T05:06:00.000Z", "notes.count_all@2032-03-04T05:07:00.000Z",
                    "notes.count_all@2032-03-04T05:16:00.000Z"]  # 05:08..05:15 coalesced into 05:16
    assert not any(k.startswith("host.purge_jobs@") for k in keys)  # switched off
    # another worker ticking the same moment submits nothing new
    from app.jobs.schedule import Schedule
    twin = Schedule(ext.jobs, [("notes", e) for _, e in sched.entries if e.name == "notes.count_all"],
                    {}, catchup_seconds=3600)
    twin.entries = [(o, e) for o, e in sched.entries if e.name == "notes.count_all"]
    assert twin.tick(base + dt.timedelta(seconds=600)) == []
    # the scheduled runs are jobs with records, run like any other
    ext.jobs.run_pending()
    admin = new_client(app, admin=True)
    runs = [j for j in admin.get("/api/jobs?kind=notes.admin_count&page_size=500").json if j["id"] in ids]
    assert len(runs) == 3 and all(j["state"] == "succeeded" and j["schedule"] == "notes.count_all" for j in runs)
    listed = {e["name"]: e for e in admin.get("/api/jobs/schedule").json}
    assert listed["notes.count_all"]["enabled"] and listed["notes.count_all"]["timing"] == "every 60 s"
    assert listed["host.purge_jobs"]["enabled"] is False
    assert new_client(app).get("/api/jobs/schedule").status_code == 403
