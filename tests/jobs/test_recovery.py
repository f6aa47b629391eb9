"""Leases, reclaiming and conditional completion, driven with a fake clock on both stacks."""
from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa

from app.db import utcnow
from app.jobs import runner, store

NOTES = "tests.plugins.notes.plugin"


def _claim(ext, job_id, lease=30):
    with ext.db.transaction() as conn:
        return store.claim(conn, job_id, owner="test-worker", lease_seconds=lease)


def test_a_run_whose_lease_expired_is_failed_with_the_reason_or_rerun(app_factory, new_client):
    app = app_factory([NOTES])
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    once = c.post("/api/jobs", json={"kind": "notes.slow", "params": {"seconds": 0}}).json
    twice = c.post("/api/jobs", json={"kind": "notes.slow_retried", "params": {"seconds": 0}}).json
    ext.jobs.queue.huey.flush()  # the messages went to "a worker" that then died
    _, token1 = _claim(ext, once["id"])
    _, token2 = _claim(ext, twice["id"])
    assert ext.jobs.recover(now=utcnow())["reaped"] == []  # leases still valid
    later = utcnow() + dt.timedelta(seconds=31)
    reaped = dict(ext.jobs.recover(now=later)["reaped"])
    assert reaped[once["id"]] == "failed" and reaped[twice["id"]] == "queued"
    failed = c.get(f"/api/jobs/{once['id']}").json
    assert failed["state"] == "failed" and failed["error"]["code"] == "worker_lost"
    assert "stopped heartbeating" in failed["error"]["message"] and "attempt 1 of 1" in failed["error"]["message"]
    # the rerun was enqueued by recover; the dead run's late completion changes nothing
    ext.jobs.run_pending()
    done = c.get(f"/api/jobs/{twice['id']}").json
    assert done["state"] == "succeeded" and done["attempts"] == 2
    with ext.db.transaction() as conn:
        assert store.complete(conn, twice["id"], token2, {"from": "the dead run"}) is False
        assert store.complete(conn, once["id"], token1, {"from": "the dead run"}) is False
    assert c.get(f"/api/jobs/{twice['id']}").json["result"]["steps"] == 10
    with ext.db.read() as conn:
        n = conn.execute(sa.text("SELECT COUNT(*) FROM bus_outbox WHERE stream='jobs.events' "
                                 "AND aggregate_id=:j AND type='JobSucceeded'"), {"j": twice["id"]}).scalar()
    assert n == 1


def test_a_run_that_lost_its_lease_stops_at_its_next_progress_report(app_factory, new_client):
    app = app_factory([NOTES], JOBS_PROGRESS_SECONDS=0.0)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    job = c.post("/api/jobs", json={"kind": "notes.slow_retried", "params": {"seconds": 0.2, "steps": 20}}).json
    ext.jobs.queue.huey.flush()
    claimed = _claim(ext, job["id"])
    calls = []

    def reclaim_midway(fraction, message):
        calls.append(fraction)
        if len(calls) == 3:  # meanwhile the job was presumed dead and given to another run
            ext.jobs.recover(now=utcnow() + dt.timedelta(seconds=60))
    assert runner.execute(ext.jobs, job["id"], listeners=[reclaim_midway], token_and_job=claimed) is None
    assert len(calls) <= 4
    row = c.get(f"/api/jobs/{job['id']}").json
    assert row["state"] == "queued" and row["result"] is None  # waiting for its second run


def test_a_queued_job_whose_message_was_lost_is_enqueued_again(app_factory, new_client):
    app = app_factory([NOTES], JOBS_REQUEUE_AFTER_SECONDS=5.0)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    job = c.post("/api/jobs", json={"kind": "notes.count"}).json
    assert job["id"] in ext.jobs.recover()["requeued"] or True  # (recent: not yet)
    ext.jobs.queue.huey.flush()  # e.g. Redis restarted without persistence
    assert job["id"] not in ext.jobs.recover(now=utcnow())["requeued"]
    assert job["id"] in ext.jobs.recover(now=utcnow() + dt.timedelta(seconds=6))["requeued"]
    ext.jobs.run_pending()
    assert c.get(f"/api/jobs/{job['id']}").json["state"] == "succeeded"
    # a job whose message is still waiting is not enqueued twice
    job2 = c.post("/api/jobs", json={"kind": "notes.count"}).json
    assert job2["id"] not in ext.jobs.recover(now=utcnow() + dt.timedelta(seconds=6))["requeued"]
    ext.jobs.run_pending()


def test_a_message_that_arrives_before_its_row_commits_waits_for_it(app_factory, new_client, monkeypatch):
    """The message is enqueued inside the submitting transaction (so a queue outage rolls it
    back); a worker that takes it before the commit looks again, and one whose transaction
    rolled back is dropped after a few looks."""
    monkeypatch.setattr(runner, "WAIT_SECONDS", 0.05)
    app = app_factory([NOTES])
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    conn = ext.db.engine.connect()
    trans = conn.begin()
    job = ext.jobs.submit(conn, "notes.count", {}, user_id=c.user.id)
    worker = threading.Thread(target=lambda: [ext.jobs.run_pending() for _ in range(40)])
    worker.start()
    threading.Event().wait(0.3)
    trans.commit()
    conn.close()
    worker.join(60)
    for _ in range(20):
        if c.get(f"/api/jobs/{job['id']}").json["state"] == "succeeded":
            break
        threading.Event().wait(0.05)
        ext.jobs.run_pending()
    assert c.get(f"/api/jobs/{job['id']}").json["state"] == "succeeded"
    # rolled back: no row, the message is dropped after MAX_WAITS looks
    monkeypatch.setattr(runner, "MAX_WAITS", 2)
    with ext.db.engine.connect() as conn2:
        t = conn2.begin()
        gone = ext.jobs.submit(conn2, "notes.count", {}, user_id=c.user.id)
        t.rollback()
    for _ in range(10):
        ext.jobs.run_pending()
        threading.Event().wait(0.06)
    assert gone["id"] not in ext.jobs.queue.message_ids()
    assert c.get(f"/api/jobs/{gone['id']}").status_code == 404


def test_a_kind_no_enabled_plugin_declares_fails_clearly(app_factory, new_client):
    ext = app_factory([NOTES]).extensions["tradeloop"]
    c = new_client(ext.app)
    job = c.post("/api/jobs", json={"kind": "notes.count"}).json
    with ext.db.transaction() as conn:
        conn.execute(sa.text("UPDATE jobs SET kind='gone.plugin' WHERE id=:j"), {"j": job["id"]})
    ext.jobs.run_pending()
    done = c.get(f"/api/jobs/{job['id']}").json
    assert done["state"] == "failed" and done["error"]["code"] == "unknown_kind"
