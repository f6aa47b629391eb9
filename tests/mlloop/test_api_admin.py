"""The admin ML API over HTTP, on an app with a database of its own (the registry is
system-wide, so these tests must not hand a champion to other tests' scoring): admin-only,
train -> refuse / promote -> score through part 1's API -> experiment routing and decision
logging (seed Experiment Tests 13-14) -> replay -> evaluation endpoints."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from plugins.mlloop.service.settings import lock_registry
from plugins.mlloop.domain import features
from plugins.mlloop.ml import abtest
from plugins.mlloop import tables as p1
from plugins.mlloop.tables import ml_models
from tests.mlloop.mlloop_fixtures import setup_context, some_ideas
from tests.mlloop.test_service_training_data import (
    SMALL_OPTIONS, SMALL_PARAMS, insert_rows, world_rows,
)

_URLS: dict = {}


@pytest.fixture
def app(app_factory, stack, request):
    """The mlloop app on a private database of this stack (created once per session)."""
    if stack not in _URLS:
        from tests.conftest import private_database_url
        _URLS[stack] = private_database_url(stack, request, "tl_models_api")
    return app_factory(["mlloop"], DATABASE_URL=_URLS[stack])


ADMIN_ROUTES = [
    ("get", "/api/admin/ml/models"), ("post", "/api/admin/ml/models/train"),
    ("get", "/api/admin/ml/models/1"), ("post", "/api/admin/ml/models/1/promote"),
    ("post", "/api/admin/ml/models/rollback"), ("get", "/api/admin/ml/settings"),
    ("put", "/api/admin/ml/settings"), ("post", "/api/admin/ml/drift"),
    ("get", "/api/admin/ml/experiments"), ("post", "/api/admin/ml/experiments/check"),
    ("get", "/api/admin/ml/evaluation/score-outcomes"),
    ("get", "/api/admin/ml/evaluation/ml-vs-rules"),
    ("get", "/api/admin/ml/evaluation/regime-breakdown"),
    ("get", "/api/admin/ml/evaluation/go-live-checklist"),
    ("get", f"/api/admin/ml/decisions/{uuid.uuid4()}/replay"),
]


@pytest.mark.parametrize("method, path", ADMIN_ROUTES)
def test_admin_only(app, new_client, method, path):
    user = new_client(app)
    kw = {"json": {}} if method in ("post", "put") else {}
    r = getattr(user, method)(path, **kw)
    assert r.status_code == 403 and r.json["code"] == "admin_only", (path, r.json)
    anon = getattr(app.test_client(), method)(path, **kw)
    assert anon.status_code == 401


def train_job(app, admin, body) -> dict:
    """POST /models/train answers 202 with the job's Location; a worker (here: this process,
    through the real queue) runs it; the job's result is the registered model."""
    r = admin.post("/api/admin/ml/models/train", json=body)
    assert r.status_code == 202 and r.headers["Location"] == f"/api/jobs/{r.json['id']}", r.json
    assert r.json["kind"] == "mlloop.train" and r.json["state"] == "queued"
    app.extensions["tradeloop"].jobs.run_pending()
    job = admin.get(r.headers["Location"]).json
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0 and job["message"] == "done"
    return admin.get(f"/api/admin/ml/models/{job['result']['id']}").json


def test_train_promote_score_experiment_replay_evaluate(app, new_client, run_consumers):
    admin = new_client(app, admin=True)
    trader = new_client(app)
    db = app.extensions["tradeloop"].db
    with db.transaction() as c:
        if not c.execute(sa.select(sa.func.count()).select_from(p1.ml_labels)).scalar():
            insert_rows(c, world_rows(seed=1, days=8, per_day=150, user_id=10**6))

    # -- train twice (the second a challenger), refuse a mismatched feature set, promote
    body = {"params": {**SMALL_PARAMS, "iterations": 40}, "options": SMALL_OPTIONS,
            "description": "api"}
    champ = train_job(app, admin, body)
    assert champ["status"] == "validating" and champ["feature_set_version"] == features.FEATURE_SET_VERSION
    assert champ["metrics"]["pooled"]["n"] > 0
    challenger = train_job(app, admin, {**body, "params": {**body["params"], "random_seed": 8}})
    assert challenger["model_version"] == champ["model_version"] + 1
    with db.transaction() as c:
        c.execute(ml_models.update().where(ml_models.c.id == challenger["id"])
                  .values(feature_set_version="v0.1"))
    r = admin.post(f"/api/admin/ml/models/{challenger['id']}/promote", json={"reason": "try"})
    assert r.status_code == 409 and r.json["code"] == "feature_set_mismatch"
    with db.transaction() as c:
        c.execute(ml_models.update().where(ml_models.c.id == challenger["id"])
                  .values(feature_set_version=features.FEATURE_SET_VERSION))
    r = admin.post(f"/api/admin/ml/models/{champ['id']}/promote", json={"reason": "go"})
    assert r.status_code == 200 and r.json["status"] == "champion", r.json
    audit = admin.get(f"/api/admin/ml/models/{champ['id']}/audit").json
    assert [a["action"] for a in audit][:1] == ["promoted"] and audit[0]["actor_user_id"] == admin.user.id
    assert admin.put("/api/admin/ml/settings", json={"ml_weight": 0.3}).json["ml_weight"] == 0.3

    # -- an experiment; then the trader's ideas are scored through part 1's API
    r = admin.post("/api/admin/ml/experiments", json={
        "name": "api", "challenger_model_id": challenger["id"], "traffic_split": 0.5,
        "min_samples_per_arm": 2, "challenger_ml_weight": 0.5})
    assert r.status_code == 201, r.json
    exp = r.json
    assert exp["champion_model_id"] == champ["id"] and exp["status"] == "running"
    cid = setup_context(trader)
    ideas = some_ideas(40)
    scored = trader.post("/api/ml/score", json={"context_id": cid, "ideas": ideas}).json["ideas"]
    run_consumers(app)
    arms = set()
    for item in scored:
        arm = abtest.route(exp["id"], item["idea_id"], 0.5)  # 13: stable routing
        arms.add(arm)
        assert (item["experiment_id"], item["experiment_arm"]) == (exp["id"], arm)
        model = challenger if arm == "challenger" else champ
        assert (item["model_id"], item["model_version"]) == (model["id"], model["model_version"])
        assert item["ml_score"] is not None
        assert item["ml_weight"] == (0.5 if arm == "challenger" else 0.3)
    assert arms == {"champion", "challenger"}
    with db.transaction() as c:  # 14: every scored idea has its decision record
        logged = {r.id: r for r in c.execute(sa.select(p1.ml_decisions).where(
            p1.ml_decisions.c.user_id == trader.user.id))}
    assert set(logged) == {i["decision_id"] for i in scored}
    assert all(logged[i["decision_id"]].experiment_arm == i["experiment_arm"] for i in scored)
    again = trader.post("/api/ml/score", json={"context_id": cid, "ideas": ideas}).json["ideas"]
    assert {(i["idea_id"], i["experiment_arm"]) for i in again} == \
        {(i["idea_id"], i["experiment_arm"]) for i in scored}

    # -- replay: every decision reproduces its logged score from the stored features
    for item in scored:
        rep = admin.get(f"/api/admin/ml/decisions/{item['decision_id']}/replay")
        assert rep.status_code == 200, rep.json
        assert rep.json["matches"], rep.json
        assert rep.json["model_id"] == item["model_id"]
    assert admin.get(f"/api/admin/ml/decisions/{uuid.uuid4()}/replay").status_code == 404

    # -- live evaluation and the job; then abort (the challenger goes back to validating)
    ev = admin.get(f"/api/admin/ml/experiments/{exp['id']}").json["evaluation"]
    n_ch = sum(1 for i in scored if i["experiment_arm"] == "challenger")
    assert ev["decisions"] == {"champion": len(scored) - n_ch, "challenger": n_ch}
    assert ev["srm"]["mismatch"] is False and ev["settled"] == {"champion": 0, "challenger": 0}
    checked = admin.post("/api/admin/ml/experiments/check").json["checked"]
    assert {"experiment_id": exp["id"], "stop": False, "reason": "insufficient_samples",
            "winner": None, "p_value": None} in checked
    r = admin.post(f"/api/admin/ml/experiments/{exp['id']}/abort", json={"reason": "done"})
    assert r.json["status"] == "aborted"
    assert admin.get(f"/api/admin/ml/models/{challenger['id']}").json["status"] == "validating"

    # -- evaluation endpoints answer in their chart shapes
    so = admin.get("/api/admin/ml/evaluation/score-outcomes").json
    assert [b["bucket"] for b in so["buckets"]] == ["0-20", "20-40", "40-60", "60-80", "80-100"]
    assert admin.get("/api/admin/ml/evaluation/ml-vs-rules?threshold=10").json["threshold"] == 10
    assert "regimes" in admin.get("/api/admin/ml/evaluation/regime-breakdown").json
    cl = admin.get("/api/admin/ml/evaluation/go-live-checklist").json
    assert cl["total"] == 6 and [c["key"] for c in cl["criteria"]] == [
        "sufficient_data", "positive_correlation", "calibration", "top_k_value",
        "no_regime_blindness", "experiment_ready"]
    assert admin.get("/api/admin/ml/evaluation/score-outcomes?score=nope").status_code == 422
    bogus = admin.get("/api/admin/ml/evaluation/go-live-checklist?model_id=1")  # takes no filters
    assert bogus.status_code == 422 and "model_id" in bogus.json["errors"]["query"]

    # -- leave the private registry as found: no champion
    admin.put("/api/admin/ml/settings", json={"ml_weight": 0.0})
    with db.transaction() as c:
        c.execute(ml_models.update().values(status="retired"))
        lock_registry(c)  # (raw SQL: tell cached scoring plans)


def test_cli_train_shows_progress_and_registers(app):
    db = app.extensions["tradeloop"].db
    with db.transaction() as c:
        if not c.execute(sa.select(sa.func.count()).select_from(p1.ml_labels)).scalar():
            insert_rows(c, world_rows(seed=1, days=8, per_day=150, user_id=10**6))
        before = c.execute(sa.select(sa.func.count()).select_from(ml_models)).scalar()
    runner = app.test_cli_runner()
    r = runner.invoke(args=["ml", "train", "--iterations", "20", "--depth", "3", "--train-days", "4",
                            "--val-days", "1", "--step-days", "1",
                            "--min-train-samples", "100", "--description", "cli"])
    assert r.exit_code == 0, r.output
    assert "training" in r.output and "registered model" in r.output
    # the report: AUCs, Brier per tier beside the base rate's, the control, the gates
    assert "held-out (4 windows" in r.output and "auc_profitable=" in r.output
    assert "tier 0:" in r.output and "tier 3:" in r.output and "all tiers:" in r.output
    assert "shuffled-label control: auc_ovr=" in r.output and "promotion gates:" in r.output
    with db.transaction() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(ml_models)).scalar() == before + 1
        new = c.execute(sa.select(ml_models).order_by(ml_models.c.id.desc()).limit(1)).first()
    assert new.status == "validating" and new.description == "cli"
    r = runner.invoke(args=["ml", "settings", "--gate-min-windows", "5"])
    assert r.exit_code == 0 and '"gate_min_windows": 5.0' in r.output, r.output
    r = runner.invoke(args=["ml", "promote", str(new.id)])
    assert r.exit_code == 1 and "gate_held_out_windows" in r.output and "4 walk-forward windows (need 5)" in r.output
    r = runner.invoke(args=["ml", "settings", "--gate-min-windows", "0", "--gate-min-samples", "0",
                            "--gate-min-skill", "-10", "--gate-min-skill-over-control", "-10"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["ml", "promote", str(new.id)])
    assert r.exit_code == 0 and "champion" in r.output, r.output
    r = runner.invoke(args=["ml", "models", "--status", "champion"])
    assert f"{new.id:>5}" in r.output
    runner.invoke(args=["ml", "settings", "--gate-min-windows", "3", "--gate-min-samples", "200",
                        "--gate-min-skill", "0", "--gate-min-skill-over-control", "0"])
    with db.transaction() as c:
        c.execute(ml_models.update().values(status="retired"))
        lock_registry(c)  # (raw SQL: tell cached scoring plans)
