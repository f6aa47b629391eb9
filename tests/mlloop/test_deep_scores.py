"""The deep scoring path as a job (issue 16): decisions a model scored get their deep score
asynchronously, as an immutable record of their own (``ml_deep_scores`` + ``DeepScoreRecorded``
on ``mlloop.decisions``) linked to the decision, readable by its owner only. Each stack, a
database of the module's own (the registry is system-wide)."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.mlloop.test_service_training_data import (
    SMALL_OPTIONS, SMALL_PARAMS, insert_rows, log_decisions, relax_gates, world_rows,
)

_URLS: dict = {}


@pytest.fixture
def app(app_factory, stack, request):
    if stack not in _URLS:
        from tests.conftest import private_database_url
        _URLS[stack] = private_database_url(stack, request, "tl_ml_deep")
    app = app_factory(["mlloop"], DATABASE_URL=_URLS[stack])
    from plugins.mlloop import service
    from plugins.mlloop.tables import ml_models
    db = app.extensions["tradeloop"].db
    with db.transaction() as c:
        if not c.execute(sa.select(sa.func.count()).select_from(ml_models)).scalar():
            insert_rows(c, world_rows(seed=5, days=7, per_day=120, user_id=10**6))
            relax_gates(c)
            model = service.training.train(c, params=SMALL_PARAMS, options=SMALL_OPTIONS, actor_user_id=None)
            service.registry.promote(c, model["id"], actor_user_id=None, reason="deep-score tests")
    return app


def _decisions(app, user_id: int, *, start: int, per_day: int = 30) -> list[str]:
    """A day of the user's ideas, scored by the champion and recorded (as the consumer does)."""
    rows = world_rows(seed=5, days=1, per_day=per_day, user_id=user_id, start=start)
    with app.extensions["tradeloop"].db.transaction() as c:
        insert_rows(c, rows)
        return log_decisions(c, rows, user_id=user_id)


def _run(app, client, params=None):
    r = client.post("/api/jobs", json={"kind": "mlloop.deep_score", "params": params or {}})
    assert r.status_code == 202, r.json
    app.extensions["tradeloop"].jobs.run_pending()
    job = client.get(r.headers["Location"]).json
    assert job["state"] == "succeeded", job
    return job


def _expected(app, decision_id: str) -> dict:
    """The deep score computed here from the registry's blob and the stored snapshot, without
    the service: P(tiers) from the model's calibrated forecast, P(profitable) from its Logloss
    models; ``ml_score`` = clamp(50 + 50 EV, 0, 100) with EV = -p0 + 0.5 p2 + p3 (the seed's
    mapping); confidence = 1 + sum(p ln p) / ln 4 (one minus the normalised entropy)."""
    from plugins.mlloop.ml.model import TrainedModel
    from plugins.mlloop.service.training_data import feature_dict
    from plugins.mlloop.tables import ml_decisions, ml_feature_snapshots, ml_models
    with app.extensions["tradeloop"].db.read() as c:
        d = c.execute(sa.select(ml_decisions).where(ml_decisions.c.id == decision_id)).one()
        snap = c.execute(sa.select(ml_feature_snapshots).where(ml_feature_snapshots.c.id == d.feature_snapshot_id)).one()
        blob = c.execute(sa.select(ml_models.c.model_blob).where(ml_models.c.id == d.model_id)).scalar_one()
    model = TrainedModel.from_blob(bytes(blob))
    frame = pd.DataFrame([feature_dict(dict(snap._mapping))])
    p = [float(x) for x in model.predict_proba(frame)[0]]
    ev = -1 * p[0] + 0 * p[1] + 0.5 * p[2] + 1 * p[3]
    return {"model_id": d.model_id, "tier_probabilities": p, "p_profitable": float(model.predict_profitable(frame)[0]),
            "ml_score": min(100.0, max(0.0, 50 + 50 * ev)),
            "confidence": 1 + sum(x * math.log(x) for x in p if x > 0) / math.log(4)}


def test_a_users_run_deep_scores_their_decisions_once_and_records_each_as_its_own_fact(app, new_client):
    from bus import outbox
    from plugins.mlloop.immutable import ImmutableRecord
    from plugins.mlloop.tables import ml_decisions, ml_deep_scores
    alice, bob = new_client(app), new_client(app)
    mine = _decisions(app, alice.user.id, start=7)
    theirs = _decisions(app, bob.user.id, start=8, per_day=12)
    first = mine[0]

    r = alice.get(f"/api/ml/decisions/{first}/deep-score")
    assert r.status_code == 404 and r.json["code"] == "no_deep_score"
    assert alice.get(f"/api/ml/decisions/{first}").json["deep_score"] is None

    job = _run(app, alice)
    assert job["result"] == {"pending": len(mine), "scored": len(mine), "recorded": len(mine), "skipped": 0}
    db = app.extensions["tradeloop"].db
    with db.read() as c:
        owners = dict(c.execute(sa.select(ml_deep_scores.c.user_id, sa.func.count())
                                .where(ml_deep_scores.c.user_id.in_([alice.user.id, bob.user.id]))
                                .group_by(ml_deep_scores.c.user_id)).all())
    assert owners == {alice.user.id: len(mine)}  # bob's decisions wait for his run or the schedule

    got = alice.get(f"/api/ml/decisions/{first}/deep-score")
    assert got.status_code == 200, got.json
    ds, want = got.json, _expected(app, first)
    assert ds["decision_id"] == first and ds["model_id"] == want["model_id"] and ds["job_id"] == job["id"]
    assert ds["tier_probabilities"] == pytest.approx(want["tier_probabilities"], abs=1e-6)
    assert ds["p_profitable"] == pytest.approx(want["p_profitable"], abs=1e-6)
    assert ds["confidence"] == pytest.approx(want["confidence"], abs=1e-5)
    assert float(ds["ml_score"]) == pytest.approx(want["ml_score"], abs=0.005)
    assert alice.get(f"/api/ml/decisions/{first}").json["deep_score"] == ds
    assert bob.get(f"/api/ml/decisions/{first}/deep-score").status_code == 404

    with db.read() as c:  # one DeepScoreRecorded per record, on the decisions' stream, scoped to alice
        evs = [e for e in outbox.read(c, "mlloop.decisions", user_id=alice.user.id, limit=10_000)
               if e.type == "DeepScoreRecorded"]
    assert sorted(e.payload["decision_id"] for e in evs) == sorted(mine)
    one = next(e for e in evs if e.payload["decision_id"] == first)
    assert one.aggregate_id == ds["deep_score_id"] and one.payload["p_profitable"] == ds["p_profitable"]

    again = _run(app, alice)  # nothing left for alice: no second record, no second event
    assert again["result"] == {"pending": 0, "scored": 0, "recorded": 0, "skipped": 0}

    sched = app.extensions["tradeloop"].jobs  # the schedule's run takes everyone's (bob's here)
    entry = next(e for _, e in sched.schedule.entries if e.name == "mlloop.deep_score")
    assert entry.every_seconds == 60
    run = sched.run_inline("mlloop.deep_score", {})
    assert run["state"] == "succeeded" and run["result"]["recorded"] >= len(theirs)
    assert bob.get(f"/api/ml/decisions/{theirs[0]}/deep-score").status_code == 200

    with db.transaction() as c, pytest.raises(ImmutableRecord):
        c.execute(ml_deep_scores.update().where(ml_deep_scores.c.decision_id == first).values(confidence=0.5))
    with db.read() as c:
        n = c.execute(sa.select(sa.func.count()).select_from(ml_deep_scores)
                      .where(ml_deep_scores.c.decision_id.in_(mine))).scalar()
        decisions = c.execute(sa.select(sa.func.count()).select_from(ml_decisions)
                              .where(ml_decisions.c.id.in_(mine))).scalar()
    assert n == decisions == len(mine)


def test_concurrent_runs_record_a_decision_once_and_rules_only_decisions_have_none(app, new_client):
    from plugins.mlloop import service
    from plugins.mlloop.tables import ml_decisions
    carol = new_client(app)
    ids = _decisions(app, carol.user.id, start=9, per_day=10)
    db = app.extensions["tradeloop"].db
    with db.transaction() as c:  # a rules-only decision: no model scored it
        row = dict(c.execute(sa.select(ml_decisions).where(ml_decisions.c.id == ids[0])).one()._mapping)
        rules = dict(row, id="r" + ids[0][1:], decision_key="r" + row["decision_key"][1:], model_id=None,
                     model_version=None, ml_score=None)
        c.execute(ml_decisions.insert(), [rules])
        todo = service.deep_scores.pending(c, user_id=carol.user.id)
        rows, skipped = service.deep_scores._score(c, todo, job_id=None)
    assert sorted(d["decision_id"] for d in todo) == sorted(ids) and skipped == []
    with db.transaction() as c:  # two runs that scored the same batch: the second records nothing
        assert service.deep_scores.record(c, rows) == len(ids)
    with db.transaction() as c:
        assert service.deep_scores.record(c, rows) == 0
    r = carol.get(f"/api/ml/decisions/{rules['id']}/deep-score")
    assert r.status_code == 404 and r.json["code"] == "no_deep_score" and "rules-only" in r.json["message"]
    assert carol.get("/api/ml/decisions/" + "0" * 36 + "/deep-score").json["code"] == "not_found"
    bad = carol.post("/api/jobs", json={"kind": "mlloop.deep_score", "params": {"limit": 0}})
    assert bad.status_code == 422 and "limit" in bad.json["errors"]["json"]["params"]

