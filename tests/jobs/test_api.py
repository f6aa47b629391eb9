"""/api/jobs on both stacks (in-process runs: ``ext.jobs.run_pending()`` takes the real queue's
messages and runs them through the worker's code path)."""
from __future__ import annotations

import sqlalchemy as sa

NOTES = "tests.plugins.notes.plugin"


def _app(app_factory, **cfg):
    return app_factory([NOTES], JOBS_PROGRESS_SECONDS=0.0, **cfg)


def events_of(ext, job_id):
    with ext.db.read() as c:
        return [r.type for r in c.execute(sa.text(
            "SELECT type FROM bus_outbox WHERE stream = 'jobs.events' AND aggregate_id = :j ORDER BY seq"),
            {"j": job_id})]


def test_submit_answers_202_with_location_then_the_job_shows_progress_timings_and_result(app_factory, new_client):
    app = _app(app_factory)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    r = c.post("/api/jobs", json={"kind": "notes.slow", "params": {"seconds": 0.05, "steps": 5}})
    assert r.status_code == 202, r.json
    assert r.headers["Location"] == f"/api/jobs/{r.json['id']}"
    assert r.json["state"] == "queued" and r.json["progress"] == 0.0 and r.json["attempts"] == 0
    ext.jobs.run_pending()
    job = c.get(r.headers["Location"]).json
    assert job["state"] == "succeeded" and job["progress"] == 1.0 and job["attempts"] == 1
    assert job["result"]["steps"] == 5 and job["error"] is None
    assert job["started_at"] >= job["created_at"] and job["finished_at"] >= job["started_at"]
    assert job["run_seconds"] >= 0.05 and job["queued_seconds"] >= 0
    # every step reported (throttle 0 here), one start and one success
    evs = events_of(ext, job["id"])
    assert evs[:2] == ["JobQueued", "JobStarted"] and evs.count("JobProgressed") == 5 and evs[-1] == "JobSucceeded"


def test_progress_events_are_throttled(app_factory, new_client):
    """1,000 progress calls within ~0.2 s, throttle 1 s: one progress write (the first)."""
    app = app_factory([NOTES], JOBS_PROGRESS_SECONDS=1.0)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    job = c.post("/api/jobs", json={"kind": "notes.slow", "params": {"seconds": 0.2, "steps": 1000}}).json
    ext.jobs.run_pending()
    evs = events_of(ext, job["id"])
    assert evs.count("JobProgressed") == 1 and evs[-1] == "JobSucceeded"


def test_jobs_are_user_scoped_and_admin_jobs_visible_to_admins(app_factory, new_client):
    app = _app(app_factory)
    alice, bob, admin = new_client(app), new_client(app), new_client(app, admin=True)
    mine = alice.post("/api/jobs", json={"kind": "notes.count"}).json
    assert bob.get(f"/api/jobs/{mine['id']}").status_code == 404
    assert bob.delete(f"/api/jobs/{mine['id']}").status_code == 404
    assert mine["id"] not in [j["id"] for j in bob.get("/api/jobs").json]
    assert mine["id"] in [j["id"] for j in alice.get("/api/jobs").json]
    # an admin kind: every admin sees it, no other user does
    other_admin = new_client(app, admin=True)
    adm = admin.post("/api/jobs", json={"kind": "notes.admin_count"}).json
    assert adm["admin"] is True
    assert other_admin.get(f"/api/jobs/{adm['id']}").status_code == 200
    assert alice.get(f"/api/jobs/{adm['id']}").status_code == 404
    # a user's own job stays private even from admins
    assert other_admin.get(f"/api/jobs/{mine['id']}").status_code == 404


def test_list_filters_and_pages(app_factory, new_client):
    app = _app(app_factory)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    ids = [c.post("/api/jobs", json={"kind": "notes.count"}).json["id"] for _ in range(3)]
    c.post("/api/jobs", json={"kind": "notes.slow", "params": {"seconds": 0}})
    ext.jobs.run_pending()
    counted = c.get("/api/jobs?kind=notes.count").json
    assert [j["id"] for j in counted] == ids[::-1]  # newest first
    assert all(j["state"] == "succeeded" for j in counted)
    first = c.get("/api/jobs?kind=notes.count&page_size=2")
    second = c.get("/api/jobs?kind=notes.count&page_size=2&page=2")
    import json
    assert json.loads(first.headers["X-Pagination"])["total"] == 3
    assert [j["id"] for j in first.json + second.json] == ids[::-1]
    assert c.get("/api/jobs?state=weird").status_code == 422


def test_bad_submissions_name_the_field(app_factory, new_client):
    app = _app(app_factory)
    c = new_client(app)
    r = c.post("/api/jobs", json={"kind": "nope"})
    assert r.status_code == 422 and "kind" in r.json["errors"]["json"]
    r = c.post("/api/jobs", json={"kind": "notes.slow", "params": {"seconds": -1}})
    assert r.status_code == 422 and "seconds" in r.json["errors"]["json"]["params"]
    r = c.post("/api/jobs", json={"kind": "notes.count", "params": {"x": 1}})
    assert r.status_code == 422 and "x" in r.json["errors"]["json"]["params"]
    assert c.post("/api/jobs", json={"params": {}}).status_code == 422
    assert c.post("/api/jobs", data="{", headers={"Content-Type": "application/json"}).status_code == 400


def test_cancel_a_queued_job_it_never_runs(app_factory, new_client, tmp_path):
    app = _app(app_factory)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    log = tmp_path / "log"
    job = c.post("/api/jobs", json={"kind": "notes.slow", "params": {"seconds": 0, "log": str(log)}}).json
    r = c.delete(f"/api/jobs/{job['id']}")
    assert r.status_code == 200 and r.json["state"] == "cancelled" and r.json["finished_at"]
    ext.jobs.run_pending()
    assert not log.exists()  # never started
    assert c.get(f"/api/jobs/{job['id']}").json["state"] == "cancelled"
    r = c.delete(f"/api/jobs/{job['id']}")
    assert r.status_code == 409 and r.json["code"] == "job_finished"


def test_cancel_a_running_job_stops_it_at_its_next_progress_report(app_factory, new_client):
    """The cancel arrives while the job runs (from its own progress callback here, as a
    second client would): 202, and the run ends ``cancelled`` without finishing its steps."""
    from app.jobs import runner, store
    app = _app(app_factory)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    job = c.post("/api/jobs", json={"kind": "notes.slow", "params": {"seconds": 0.5, "steps": 50}}).json
    seen = []

    def canceller(fraction, message):
        seen.append(fraction)
        if len(seen) == 3:
            r = c.delete(f"/api/jobs/{job['id']}")
            assert r.status_code == 202 and r.json["cancel_requested"] is True and r.json["state"] == "running"
    with ext.db.transaction() as conn:
        claimed = store.claim(conn, job["id"], owner="test", lease_seconds=30)
    assert runner.execute(ext.jobs, job["id"], listeners=[canceller], token_and_job=claimed) == "cancelled"
    done = c.get(f"/api/jobs/{job['id']}").json
    assert done["state"] == "cancelled" and done["result"] is None and len(seen) < 50


def test_a_failing_job_records_a_clear_error(app_factory, new_client):
    app = _app(app_factory)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    job = c.post("/api/jobs", json={"kind": "notes.slow", "params": {"seconds": 0, "fail": "no data"}}).json
    ext.jobs.run_pending()
    done = c.get(f"/api/jobs/{job['id']}").json
    assert done["state"] == "failed" and done["finished_at"]
    assert done["error"] == {"code": "asked_to_fail", "message": "no data", "status": 422}


def test_retry_on_reruns_with_backoff_until_it_succeeds(app_factory, new_client, tmp_path, monkeypatch):
    from app.jobs import runner
    monkeypatch.setattr(runner, "RETRY_BACKOFF_SECONDS", 0.0)
    app = _app(app_factory)
    ext = app.extensions["tradeloop"]
    c = new_client(app)
    counter = tmp_path / "n"
    job = c.post("/api/jobs", json={"kind": "notes.flaky", "params": {"counter": str(counter), "succeed_on": 2}}).json
    for _ in range(5):
        ext.jobs.run_pending()
    done = c.get(f"/api/jobs/{job['id']}").json
    assert done["state"] == "succeeded" and done["attempts"] == 2 and done["result"] == {"attempt": 2}
    assert "JobRetrying" in events_of(ext, job["id"])
    # never succeeding: failed after max_attempts (3), with the last error
    counter2 = tmp_path / "m"
    job = c.post("/api/jobs", json={"kind": "notes.flaky", "params": {"counter": str(counter2), "succeed_on": 9}}).json
    for _ in range(6):
        ext.jobs.run_pending()
    done = c.get(f"/api/jobs/{job['id']}").json
    assert done["state"] == "failed" and done["attempts"] == 3
    assert done["error"]["type"] == "ConnectionError" and "attempt 3 failed" in done["error"]["message"]


def test_openapi_documents_the_jobs_api(app_factory):
    spec = _app(app_factory).test_client().get("/openapi.json").json
    post = spec["paths"]["/api/jobs"]["post"]
    assert "Location" in post["responses"]["202"]["headers"]
    one = spec["paths"]["/api/jobs/{job_id}"]
    assert {"200", "202"} <= set(one["delete"]["responses"]) and "200" in one["get"]["responses"]
    job = spec["components"]["schemas"]["Job"]
    assert job["properties"]["state"]["enum"] == ["queued", "running", "succeeded", "failed", "cancelled"]


def test_jobs_topic_is_in_the_event_catalogue_and_streamed(app_factory):
    app = _app(app_factory)
    doc = app.test_client().get("/asyncapi.json").json
    assert doc["channels"]["jobs.events"]["x-owner"] == "host"
    assert "jobs.events.JobProgressed" in doc["components"]["messages"]
    assert "/sse/jobs" in {r.rule for r in app.url_map.iter_rules()}
    assert app.test_client().get("/sse/jobs").status_code == 401
