"""The ML loop's background jobs (issue 16): each kind runs through the job system on a
database of its own (the registry is system-wide), and the schedule carries its entries."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from tests.mlloop.test_service_training_data import SMALL_OPTIONS, SMALL_PARAMS, insert_rows, world_rows

_URLS: dict = {}


@pytest.fixture
def app(app_factory, stack, request):
    if stack not in _URLS:
        from tests.conftest import private_database_url
        _URLS[stack] = private_database_url(stack, request, "tl_ml_jobs")
    app = app_factory(["mlloop"], DATABASE_URL=_URLS[stack])
    from plugins.mlloop import tables as p1
    with app.extensions["tradeloop"].db.transaction() as c:
        if not c.execute(sa.select(sa.func.count()).select_from(p1.ml_labels)).scalar():
            insert_rows(c, world_rows(seed=3, days=7, per_day=120, user_id=10**6))
    return app


def run(app, client, kind, params=None):
    r = client.post("/api/jobs", json={"kind": kind, "params": params or {}})
    assert r.status_code == 202, r.json
    app.extensions["tradeloop"].jobs.run_pending()
    return client.get(r.headers["Location"]).json


def test_walk_forward_evaluation_is_a_job_that_registers_nothing(app, new_client):
    from plugins.mlloop.tables import ml_models
    admin = new_client(app, admin=True)
    with app.extensions["tradeloop"].db.read() as c:
        before = c.execute(sa.select(sa.func.count()).select_from(ml_models)).scalar()
    job = run(app, admin, "mlloop.walk_forward", {"params": SMALL_PARAMS, "options": SMALL_OPTIONS})
    assert job["state"] == "succeeded", job
    res = job["result"]
    assert res["rows"] == 7 * 120 and len(res["windows"]) >= 2 and res["pooled"]["n"] > 0
    with app.extensions["tradeloop"].db.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(ml_models)).scalar() == before
    assert new_client(app).post("/api/jobs", json={"kind": "mlloop.walk_forward"}).status_code == 403


def test_checks_materialisation_and_the_simulator_run_as_jobs(app, new_client):
    admin = new_client(app, admin=True)
    exp = run(app, admin, "mlloop.check_experiments")
    assert exp["state"] == "succeeded" and exp["result"] == {"checked": []}
    drift = run(app, admin, "mlloop.check_drift")
    assert drift["state"] == "succeeded" and drift["result"]["champions"] == len(drift["result"]["reports"])
    mat = run(app, admin, "mlloop.materialize")
    assert mat["state"] == "succeeded" and mat["result"]["days"] >= 0
    sim = run(app, admin, "mlloop.simulate", {"days": 1, "ideas_per_day": 40, "user": f"sim_{admin.user.id}"})
    assert sim["state"] == "succeeded", sim
    assert sim["result"]["user"] == f"sim_{admin.user.id}" and sim["result"]["contexts"] >= 1
    bad = admin.post("/api/jobs", json={"kind": "mlloop.simulate", "params": {"days": 0}})
    assert bad.status_code == 422 and "days" in bad.json["errors"]["json"]["params"]


def test_the_schedule_runs_the_loops_checks(app):
    sched = app.extensions["tradeloop"].jobs.schedule
    entries = {e.name: e for _, e in sched.entries}
    assert {"mlloop.check_experiments", "mlloop.check_drift", "mlloop.materialize"} <= set(entries)
    from app.jobs.schedule import latest_slot
    friday_2240 = dt.datetime(2031, 5, 9, 22, 40, tzinfo=dt.timezone.utc)
    assert latest_slot(entries["mlloop.check_drift"], friday_2240, friday_2240 - dt.timedelta(hours=1)) == \
        dt.datetime(2031, 5, 9, 22, 30, tzinfo=dt.timezone.utc)
    saturday = dt.datetime(2031, 5, 10, 22, 40, tzinfo=dt.timezone.utc)
    assert latest_slot(entries["mlloop.check_drift"], saturday, saturday - dt.timedelta(hours=20)) is None
